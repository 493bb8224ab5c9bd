// One chat call with the official `openai` package and its DEFAULT retry policy (maxRetries 2), for
// the hard-budget test: prints what the SDK threw (status, error body) as JSON.
// Usage: node budget.mjs BASE_URL API_KEY
import OpenAI from "openai";

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey });
try {
  await client.chat.completions.create({ model: "openai/gpt-4o-mini", messages: [{ role: "user", content: "hi" }] });
  process.stdout.write(JSON.stringify({ error: null }) + "\n");
} catch (err) {
  process.stdout.write(JSON.stringify({ error: { status: err.status, name: err.constructor.name, body: err.error ?? null } }) + "\n");
}
