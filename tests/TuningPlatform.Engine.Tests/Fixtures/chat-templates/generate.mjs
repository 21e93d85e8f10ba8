// Renders every chat template in this folder (plus the engine's built-ins and, when ../shared/assets is
// present, the real Llama 3 template) with @huggingface/jinja — an independent Jinja implementation that
// follows transformers' apply_chat_template — and writes expected.json for ChatTemplateTests.
//
//   mkdir -p /tmp/jinja && cd /tmp/jinja && npm install @huggingface/jinja@0.5.11
//   NODE_PATH=/tmp/jinja/node_modules node tests/TuningPlatform.Engine.Tests/Fixtures/chat-templates/generate.mjs
//
// CI does not need npm: the output is committed.
import { readFileSync, readdirSync, writeFileSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(join(process.env.NODE_PATH ?? "/tmp/jinja/node_modules", "x.js"));
const { Template } = require("@huggingface/jinja");

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..", "..", "..");
const templates = {};
const specials = {};
for (const f of readdirSync(join(here, "templates")).sort()) {
  templates[`fixture:${f}`] = readFileSync(join(here, "templates", f), "utf8");
}
const builtIns = join(repo, "src", "TuningPlatform.Engine", "Chat", "Templates");
for (const f of readdirSync(builtIns).sort()) {
  templates[`builtin:${f.replace(/\.jinja$/, "")}`] = readFileSync(join(builtIns, f), "utf8");
}
const llama3 = join(repo, "..", "shared", "assets", "tokenizers", "llama3", "tokenizer_config.json");
if (existsSync(llama3)) {
  const config = JSON.parse(readFileSync(llama3, "utf8"));
  templates["asset:llama3"] = config.chat_template;
  specials["asset:llama3"] = { bos_token: config.bos_token, eos_token: config.eos_token };
}

const { cases } = JSON.parse(readFileSync(join(here, "cases.json"), "utf8"));
const results = [];
for (const [templateName, source] of Object.entries(templates)) {
  const template = new Template(source);
  const special = specials[templateName] ?? { bos_token: "<s>", eos_token: "</s>" };
  for (const [caseName, c] of Object.entries(cases)) {
    for (const addGenerationPrompt of [false, true]) {
      const vars = { ...special, ...c, add_generation_prompt: addGenerationPrompt };
      let output = null;
      let error = null;
      try {
        output = template.render(vars);
      } catch (e) {
        error = String(e.message ?? e);
      }
      results.push({ template: templateName, case: caseName, add_generation_prompt: addGenerationPrompt, ...special, output, error });
    }
  }
}
writeFileSync(join(here, "expected.json"), JSON.stringify({ generator: "@huggingface/jinja 0.5.11", results }, null, 1) + "\n");
console.log(`${results.length} renderings, ${results.filter((r) => r.error).length} errors`);
