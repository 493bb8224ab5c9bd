// Calls the API once with the official `openai` package and prints what the SDK returned as JSON.
// Usage: node chat.mjs BASE_URL API_KEY MODE [MODEL] [HEADERS_JSON]
//   MODE: plain | stream | stream-usage | embeddings | error
import OpenAI from "openai";

const [baseURL, apiKey, mode, model = "openai/gpt-4o-mini", headers = "{}"] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, defaultHeaders: JSON.parse(headers) });
const messages = [{ role: "user", content: "Say hello to the proxy from Node" }];

async function main() {
  if (mode === "plain") {
    return await client.chat.completions.create({ model, messages });
  }
  if (mode === "stream" || mode === "stream-usage") {
    const options = mode === "stream-usage" ? { stream_options: { include_usage: true } } : {};
    const stream = await client.chat.completions.create({ model, messages, stream: true, ...options });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    return chunks;
  }
  if (mode === "embeddings") {
    return await client.embeddings.create({ model, input: ["node", "proxy"], encoding_format: "float" });
  }
  if (mode === "error") {
    try {
      await client.chat.completions.create({ model, messages });
      return { error: null };
    } catch (err) {
      return { error: { status: err.status, name: err.constructor.name, body: err.error ?? null } };
    }
  }
  throw new Error(`unknown mode ${mode}`);
}

process.stdout.write(JSON.stringify(await main()) + "\n");
