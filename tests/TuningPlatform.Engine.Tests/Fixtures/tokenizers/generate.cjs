// Generates the tokenizer parity fixtures: varied strings and the ids that Hugging Face's
// tokenizers (JS port, npm @huggingface/tokenizers) produces for them with each shared tokenizer.json.
//
//   mkdir -p /tmp/tokref && cd /tmp/tokref && npm install @huggingface/tokenizers
//   HF_TOKENIZERS=/tmp/tokref/node_modules/@huggingface/tokenizers \
//     node generate.cjs <path to shared/assets>
//
// Outputs (beside this script): inputs.json ({"strings": [...], "utf16": [[code units], ...]} — the
// second list holds strings with lone surrogates, which JSON readers reject as text) and, per
// tokenizer, NAME.ids.txt: one line of space-separated ids per input (add_special_tokens=false),
// then a line "#decode" and per input the JS decode of those ids when it differs from the input
// ("=" when equal).
const fs = require("fs");
const path = require("path");
const { Tokenizer } = require(process.env.HF_TOKENIZERS ?? "@huggingface/tokenizers");

const assets = process.argv[2];
if (!assets) { throw new Error("usage: node generate.cjs <shared/assets>"); }
const here = __dirname;

// Deterministic PRNG (mulberry32) so the inputs are reproducible.
let seed = 20240611;
function rand() { seed |= 0; seed = (seed + 0x6D2B79F5) | 0; let t = Math.imul(seed ^ (seed >>> 15), 1 | seed); t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return ((t ^ (t >>> 14)) >>> 0) / 4294967296; }
const pick = (a) => a[Math.floor(rand() * a.length)];

const fragments = {
  prose: ["Once upon a time", "the quick brown fox", "jumps over the lazy dog", "Hello, world!", "It's", "they'll", "we've", "I'd", "DON'T", "She'S", "YOU'RE", "o'clock", "rock'n'roll", "e.g.", "Mr. Smith", "state-of-the-art", "well—known", "«quoted»", "\"double\"", "'single'", "(paren)", "[bracket]", "naïve café", "Ünïcödé", "ﬁnance"],
  code: ["def f(x):\n    return x**2", "for (int i = 0; i < n; i++) {", "}", "x += 1;", "if a != b && c >= d:", "print(\"hi\")", "#include <stdio.h>", "console.log(`${a}`)", "SELECT * FROM t WHERE id=42;", "::", "->", "=>", "/* comment */", "// note", "0x1F", "a_b_c", "camelCaseName", "snake_case_name", "<div class=\"x\">", "</div>", "$HOME/.bashrc", "C:\\Windows\\path", "http://example.com/a?b=c&d=e"],
  ws: [" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n", "\n ", "  \n  ", "\u00a0", "\u3000", "\u2003", " \t \n"],
  digits: ["0", "7", "42", "123", "1234", "12345", "3.14159", "1,000,000", "2024-06-11", "10^9", "007", "½", "²", "٣٤٥", "ⅷ"],
  accents: ["é", "è", "ê", "ñ", "ç", "ø", "å", "ß", "e\u0301", "a\u0308", "Ελληνικά", "Русский текст", "עברית", "العربية", "हिन्दी", "ไทย", "Tiếng Việt"],
  cjk: ["日本語", "中文字符", "한국어", "こんにちは", "カタカナ", "漢字かな交じり文", "𠀀𠀁", "𪚥", "東京タワー"],
  emoji: ["🚀", "😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "❤️", "✅", "🤖💬", "🐍", "☕"],
  special: ["<s>", "</s>", "<unk>", "<|endoftext|>", "<|begin_of_text|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>", "<|start_header_id|>", "<0x0A>", "<|reserved_special_token_3|>"],
};
const kinds = Object.keys(fragments);

function randomString() {
  const n = 1 + Math.floor(rand() * 6);
  let s = "";
  for (let i = 0; i < n; i++) {
    const k = pick(kinds);
    s += pick(fragments[k]);
    const r = rand();
    if (r < 0.5) { s += " "; } else if (r < 0.6) { s += pick(fragments.ws); }
  }
  if (rand() < 0.15) { s = " " + s; }
  if (rand() < 0.1) { s = s.trimEnd(); }
  return s;
}

const strings = ["", " ", "  ", "\n", "a", "A", "'s", "   leading", "trailing   ", "x\n\n\ny", "  \n\n  word"];
for (const k of kinds) { for (const f of fragments[k]) { strings.push(f); } }
while (strings.length < 1500) { strings.push(randomString()); }
const u16strings = ["a\uD800b", "\uDC00", "x \uD83D", "\uD83D\uD83D\uDE00", "ok\uDFFF ok"];
fs.writeFileSync(path.join(here, "inputs.json"), JSON.stringify({ strings, utf16: u16strings.map((s) => Array.from({ length: s.length }, (_, i) => s.charCodeAt(i))) }));

const tokenizers = {
  "gpt2": "tokenizers/gpt2",
  "llama2": "tokenizers/llama2",
  "llama3": "tokenizers/llama3",
  "mistral-like-spm": "tokenizers/mistral-like-spm",
  "smollm2-135m": "tokenizers/smollm2-135m",
  "stories260K": "models/stories260K-hf",
};
for (const [name, dir] of Object.entries(tokenizers)) {
  const json = JSON.parse(fs.readFileSync(path.join(assets, dir, "tokenizer.json"), "utf8"));
  const cfgPath = path.join(assets, dir, "tokenizer_config.json");
  const cfg = fs.existsSync(cfgPath) ? JSON.parse(fs.readFileSync(cfgPath, "utf8")) : {};
  const tok = new Tokenizer(json, cfg);
  const all = strings.concat(u16strings);
  const ids = all.map((s) => tok.encode(s, { add_special_tokens: false }).ids);
  const decoded = ids.map((x, i) => { const d = x.length === 0 ? "" : tok.decode(x, { skip_special_tokens: false, clean_up_tokenization_spaces: false }); return d === all[i] ? "=" : JSON.stringify(d); });
  fs.writeFileSync(path.join(here, `${name}.ids.txt`), ids.map((x) => x.join(" ")).join("\n") + "\n#decode\n" + decoded.join("\n") + "\n");
  console.log(name, ids.reduce((a, x) => a + x.length, 0), "ids");
}
