// Continue's real tab-autocomplete engine (npm @continuedev/core: CompletionProvider, its templates,
// stop tokens and post-processing, and the LLM class its YAML config builds) asked for one completion.
// The editor is the only stand-in: files on disk, no LSP, no clipboard, no git.
// Usage: node continue_autocomplete.mjs CONFIG.yaml FILE LINE CHARACTER   (prints the outcome as JSON)
import { register } from "node:module";
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

// @continuedev/core's dist imports some of its own files without the `.js` Node's ESM loader needs.
register("data:text/javascript," + encodeURIComponent(`
export async function resolve(spec, ctx, next) {
  try { return await next(spec, ctx); } catch (e) {
    if (!spec.startsWith(".") || e.code !== "ERR_MODULE_NOT_FOUND" && e.code !== "ERR_UNSUPPORTED_DIR_IMPORT") throw e;
    try { return await next(spec + ".js", ctx); } catch { return next(spec + "/index.js", ctx); }
  }
}`));

const [configPath, file, line, character] = process.argv.slice(2);
const core = process.env.CONTINUE_CORE;  // the installed package's folder
// ...and reads CommonJS's `__dirname` for the files the VS Code extension ships beside its bundle:
// lay out the tree-sitter grammars it parses the file with the way the extension does.
const out = fs.mkdtempSync(path.join(process.env.HOME, "continue-out-"));
fs.symlinkSync(path.join(core, "..", "..", "tree-sitter-wasms", "out"), path.join(out, "tree-sitter-wasms"));
globalThis.__dirname = out;
const load = (p) => import(pathToFileURL(path.join(core, "dist", p)).href);
const { parse } = await import(pathToFileURL(path.join(core, "..", "..", "yaml", "dist", "index.js")).href);
const { llmsFromModelConfig } = await load("config/yaml/models.js");
const { CompletionProvider } = await load("autocomplete/CompletionProvider.js");

const config = parse(fs.readFileSync(configPath, "utf8"));
const model = config.models.find((m) => (m.roles ?? []).includes("autocomplete"));
const [llm] = await llmsFromModelConfig(model, undefined, "carrot-test", {}, async () => {});
const workspace = pathToFileURL(path.dirname(file)).href;
const uri = pathToFileURL(file).href;
const read = async (u) => fs.readFileSync(new URL(u), "utf8");

const ide = {  // the editor: what CompletionProvider asks of VS Code or JetBrains
  getIdeInfo: async () => ({ ideType: "vscode", name: "headless", version: "0", remoteName: "", extensionVersion: "0" }),
  getWorkspaceDirs: async () => [workspace],
  readFile: read,
  readRangeInFile: async (u, r) => (await read(u)).split("\n").slice(r.start.line, r.end.line + 1).join("\n"),
  getClipboardContent: async () => ({ text: "", copiedAt: new Date(0).toISOString() }),
  getDiff: async () => [],
  getRepoName: async () => undefined,
  getUniqueId: async () => "carrot-test",
  getLastFileSaveTimestamp: () => 0,
  gotoDefinition: async () => [],
  onDidChangeActiveTextEditor: () => {},
  getOpenFiles: async () => [uri],
};
const errors = [];
const provider = new CompletionProvider(
  { loadConfig: async () => ({ config: { tabAutocompleteOptions: { debounceDelay: 0, useCache: false } } }) },
  ide, async () => llm, (e) => errors.push(String(e?.message ?? e)), async () => []);
const outcome = await provider.provideInlineCompletionItems({
  isUntitledFile: false, completionId: "c1", filepath: uri, pos: { line: Number(line), character: Number(character) },
  recentlyEditedFiles: [], recentlyEditedRanges: [], recentlyVisitedRanges: [],
}, new AbortController().signal);
console.log(JSON.stringify({ completion: outcome?.completion ?? null, prompt: outcome?.prompt, errors,
  model: llm.model, provider: llm.providerName }));
process.exit(0);  // the sqlite cache and HTTP agents keep the event loop alive
