#!/usr/bin/env python3
"""Reference values for TuningPlatform.Evaluation's metric tests -> reference_metrics.json.

Run with Debian's python3 (apt-get install python3-nltk python3-sklearn):
    /usr/bin/python3 tests/TuningPlatform.Evaluation.Tests/Fixtures/generate_fixtures.py

Sources of truth, by metric:
  * classification: scikit-learn (accuracy_score, precision_recall_fscore_support, confusion_matrix);
  * BLEU: NLTK's corpus_bleu on 13a-tokenised text where every n-gram order matches (so smoothing
    is not involved), checked here against the port below, which also covers the smoothed cases;
  * SQuAD EM/F1, ROUGE (rouge-score), sacreBLEU BLEU/chrF: small Python ports written from the
    published algorithms, independently of the C# code. CI reads only the JSON; it needs no Python.
The inputs are drawn from a seeded generator, so the file is reproducible.
"""
import collections
import json
import math
import os
import random
import re
import string

from nltk.translate.bleu_score import corpus_bleu
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

# ---------------------------------------------------------------- SQuAD (evaluate-v2.0.py)

def squad_normalize(s):
    s = s.lower()
    s = ''.join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r'\b(a|an|the)\b', ' ', s)
    return ' '.join(s.split())

def squad_em(p, g):
    return float(squad_normalize(p) == squad_normalize(g))

def squad_f1(p, g):
    pt, gt = squad_normalize(p).split(), squad_normalize(g).split()
    if not pt or not gt:
        return float(pt == gt)
    common = collections.Counter(pt) & collections.Counter(gt)
    same = sum(common.values())
    if same == 0:
        return 0.0
    prec, rec = same / len(pt), same / len(gt)
    return 2 * prec * rec / (prec + rec)

# ---------------------------------------------------------------- ROUGE (rouge-score)

def rouge_tokens(text):
    text = re.sub(r'[^a-z0-9]+', ' ', text.lower())
    return [t for t in text.split() if re.match(r'^[a-z0-9]+$', t)]

def prf(p, r):
    return [p, r, 2 * p * r / (p + r) if p + r > 0 else 0.0]

def rouge_n(pred, ref, n):
    grams = lambda toks: collections.Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))
    pg, rg = grams(pred), grams(ref)
    overlap = sum(min(c, rg[g]) for g, c in pg.items())
    return prf(overlap / max(sum(pg.values()), 1), overlap / max(sum(rg.values()), 1))

def lcs_table(ref, can):
    t = [[0] * (len(can) + 1) for _ in range(len(ref) + 1)]
    for i in range(1, len(ref) + 1):
        for j in range(1, len(can) + 1):
            t[i][j] = t[i - 1][j - 1] + 1 if ref[i - 1] == can[j - 1] else max(t[i - 1][j], t[i][j - 1])
    return t

def rouge_l(pred, ref):
    if not pred or not ref:
        return [0.0, 0.0, 0.0]
    lcs = lcs_table(ref, pred)[-1][-1]
    return prf(lcs / len(pred), lcs / len(ref))

def lcs_positions(ref, can):
    t = lcs_table(ref, can)
    i, j, out = len(ref), len(can), []
    while i > 0 and j > 0:
        if ref[i - 1] == can[j - 1]:
            out.insert(0, i - 1); i -= 1; j -= 1
        elif t[i][j - 1] > t[i - 1][j]:
            j -= 1
        else:
            i -= 1
    return out

def rouge_lsum(pred_text, ref_text):
    sents = lambda t: [rouge_tokens(x) for x in t.split('\n') if len(x)]
    ps, rs = sents(pred_text), sents(ref_text)
    m, n = sum(map(len, rs)), sum(map(len, ps))
    if not m or not n:
        return [0.0, 0.0, 0.0]
    cr, cp = collections.Counter(), collections.Counter()
    for s in rs: cr.update(s)
    for s in ps: cp.update(s)
    hits = 0
    for r in rs:
        union = sorted(set().union(*[lcs_positions(r, c) for c in ps]))
        for t in (r[i] for i in union):
            if cp[t] > 0 and cr[t] > 0:
                hits += 1; cp[t] -= 1; cr[t] -= 1
    return prf(hits / n, hits / m)

# ---------------------------------------------------------------- sacreBLEU (BLEU, chrF)

def tok13a(line):
    line = line.replace('<skipped>', '').replace('-\n', '').replace('\n', ' ')
    if '&' in line:
        line = line.replace('&quot;', '"').replace('&amp;', '&').replace('&lt;', '<').replace('&gt;', '>')
    line = ' ' + line + ' '
    line = re.sub(r'([\{-\~\[-\` -\&\(-\+\:-\@\/])', r' \1 ', line)
    line = re.sub(r'([^0-9])([\.,])', r'\1 \2 ', line)
    line = re.sub(r'([\.,])([^0-9])', r' \1 \2', line)
    line = re.sub(r'([0-9])(-)', r'\1 \2 ', line)
    return ' '.join(line.split())

def bleu_stats(hyp, refs):
    h = tok13a(hyp).split()
    rs = [tok13a(r).split() for r in refs]
    closest = min((abs(len(h) - len(r)), len(r)) for r in rs)[1]
    correct, total = [0] * 4, [0] * 4
    for n in range(1, 5):
        grams = lambda toks: collections.Counter(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))
        maxref = collections.Counter()
        for r in rs:
            for g, c in grams(r).items():
                maxref[g] = max(maxref[g], c)
        for g, c in grams(h).items():
            total[n - 1] += c
            correct[n - 1] += min(c, maxref[g])
    return [len(h), closest] + correct + total

def bleu_from_stats(s, effective_order):
    c, r, correct, total = s[0], s[1], s[2:6], s[6:10]
    bp = 1.0 if c >= r else (math.exp(1 - r / c) if c > 0 else 0.0)
    precisions, smooth, order = [0.0] * 4, 1.0, 4
    for n in range(1, 5):
        if total[n - 1] == 0:
            break
        if effective_order:
            order = n
        if correct[n - 1] == 0:
            smooth *= 2
            precisions[n - 1] = 100.0 / (smooth * total[n - 1])
        else:
            precisions[n - 1] = 100.0 * correct[n - 1] / total[n - 1]
    if any(p == 0 for p in precisions[:order]):
        return 0.0, precisions, bp
    return bp * math.exp(sum(math.log(p) for p in precisions[:order]) / order), precisions, bp

def corpus_bleu_sacre(hyps, refs):
    total = [0] * 10
    for h, rs in zip(hyps, refs):
        total = [a + b for a, b in zip(total, bleu_stats(h, rs))]
    return bleu_from_stats(total, False)

def char_grams(text):
    text = ''.join(text.split())
    return [collections.Counter(text[i:i + n] for i in range(len(text) - n + 1)) for n in range(1, 7)]

def chrf_from_stats(s, beta=2.0):
    factor, p, r, eff = beta ** 2, 0.0, 0.0, 0
    for i in range(6):
        nh, nr, nm = s[3 * i:3 * i + 3]
        if nh > 0 and nr > 0:
            p += nm / nh; r += nm / nr; eff += 1
    if eff == 0:
        return 0.0
    p, r = p / eff, r / eff
    return 100 * (1 + factor) * p * r / (factor * p + r) if p + r else 0.0

def chrf_stats(hyp, refs):
    hg, best, best_f = char_grams(hyp), None, -1.0
    for ref in refs:
        rg, s = char_grams(ref), []
        for h, r in zip(hg, rg):
            s += [sum(h.values()), sum(r.values()), sum(min(c, r[g]) for g, c in h.items())]
        f = chrf_from_stats(s)
        if f > best_f:
            best, best_f = s, f
    return best

def corpus_chrf(hyps, refs):
    total = [0] * 18
    for h, rs in zip(hyps, refs):
        total = [a + b for a, b in zip(total, chrf_stats(h, rs))]
    return chrf_from_stats(total)

# ---------------------------------------------------------------- inputs

WORDS = ("the a an cat dog sat on mat The Dog bit man it was not unexpected surprised "
         "had just bitten him first 3 1,000 4.5 1990s well-known U.S. e-mail x-ray").split()
PUNCT = [',', '.', '!', '?', "'s", '"', '(', ')', ':', ';', '-', '&amp;', '$', '%']

def sentence(rng, lo=3, hi=14):
    out = []
    for _ in range(rng.randint(lo, hi)):
        w = rng.choice(WORDS)
        if rng.random() < 0.25:
            w += rng.choice(PUNCT)
        out.append(w)
    return ' '.join(out)

def perturb(rng, text):
    words = text.split()
    for _ in range(rng.randint(0, 4)):
        op = rng.random()
        if op < 0.4 and words:
            words[rng.randrange(len(words))] = rng.choice(WORDS)
        elif op < 0.7 and len(words) > 1:
            del words[rng.randrange(len(words))]
        else:
            words.insert(rng.randrange(len(words) + 1), rng.choice(WORDS))
    return ' '.join(words)

def main():
    rng = random.Random(20240917)
    pairs = []
    for _ in range(60):
        ref = sentence(rng)
        pred = perturb(rng, ref) if rng.random() < 0.8 else sentence(rng)
        if len(pairs) >= 28 and len(pred.split()) < 5:
            pred += ' ' + sentence(rng, 4, 6)
        pairs.append((pred, ref))
    pairs += [('', ''), ('The', 'a'), ('', 'cat'), ('Cat!', 'the cat')]

    squad = [{'prediction': p, 'reference': r, 'exact_match': squad_em(p, r), 'f1': squad_f1(p, r)} for p, r in pairs]

    rouge = []
    for p, r in pairs:
        pt, rt = rouge_tokens(p), rouge_tokens(r)
        rouge.append({'prediction': p, 'reference': r, 'rouge1': rouge_n(pt, rt, 1),
                      'rouge2': rouge_n(pt, rt, 2), 'rougeL': rouge_l(pt, rt)})
    for _ in range(12):
        ref = '\n'.join(sentence(rng) for _ in range(rng.randint(1, 4)))
        pred = '\n'.join(perturb(rng, s) for s in ref.split('\n') if rng.random() < 0.9)
        rouge.append({'prediction': pred, 'reference': ref, 'rougeLsum': rouge_lsum(pred, ref)})

    bleu_sentences = []
    for p, r in pairs[:60]:
        refs = [r] + ([perturb(rng, r)] if rng.random() < 0.5 else [])
        s = bleu_stats(p, refs)
        bleu_sentences.append({'hypothesis': p, 'references': refs, 'tokenized': tok13a(p), 'stats': s,
                               'sentence_bleu': bleu_from_stats(s, True)[0],
                               'sentence_chrf': chrf_from_stats(chrf_stats(p, refs))})
    corpora = []
    for k in range(8):
        chunk = bleu_sentences[k * 7:(k + 1) * 7]
        hyps, refs = [c['hypothesis'] for c in chunk], [c['references'] for c in chunk]
        score, precisions, bp = corpus_bleu_sacre(hyps, refs)
        nltk_bleu = None
        # NLTK agrees with sacreBLEU when smoothing is not involved (every order has a match) and
        # every hypothesis has 4+ tokens (NLTK counts a denominator of at least 1 per segment).
        if all(sum(c['stats'][2 + n] for c in chunk) > 0 for n in range(4)) and all(c['stats'][0] >= 4 for c in chunk):
            nltk_bleu = 100 * corpus_bleu([[tok13a(r).split() for r in rs] for rs in refs],
                                          [tok13a(h).split() for h in hyps])
            assert abs(nltk_bleu - score) < 1e-9, (nltk_bleu, score)
        corpora.append({'hypotheses': hyps, 'references': refs, 'bleu': score, 'precisions': precisions,
                        'brevity_penalty': bp, 'nltk_bleu': nltk_bleu, 'chrf': corpus_chrf(hyps, refs)})

    labels = ['yes', 'no', 'maybe']
    classification = []
    for k in range(4):
        n = 40 + 10 * k
        y_true = [rng.choice(labels) for _ in range(n)]
        y_pred = [t if rng.random() < 0.6 else rng.choice(labels + (['<none>'] if k % 2 else [])) for t in y_true]
        p, r, f, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=0)
        agg = {avg: precision_recall_fscore_support(y_true, y_pred, labels=labels, average=avg, zero_division=0)[:3]
               for avg in ('macro', 'micro')}
        classification.append({
            'labels': labels, 'references': y_true, 'predictions': y_pred,
            'accuracy': accuracy_score(y_true, y_pred),
            'precision': list(p), 'recall': list(r), 'f1': list(f), 'support': [int(x) for x in support],
            'macro': list(agg['macro']), 'micro': list(agg['micro']),
            'confusion': confusion_matrix(y_true, y_pred, labels=labels + ['<none>']).flatten().tolist()})

    out = {'squad': squad, 'rouge': rouge, 'bleu_sentences': bleu_sentences, 'bleu_corpora': corpora,
           'classification': classification}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'reference_metrics.json')
    with open(path, 'w') as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write('\n')
    print(path, os.path.getsize(path), 'bytes;', sum(c['nltk_bleu'] is not None for c in corpora), 'corpora checked against NLTK')

if __name__ == '__main__':
    main()
