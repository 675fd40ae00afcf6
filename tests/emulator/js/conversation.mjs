// One Nova Sonic conversation through the AWS SDK for JavaScript v3 (BedrockRuntimeClient with
// its default request handler, NodeHttp2Handler), for tests/emulator/test_emulator_js_sdk.py.
//
// Environment: ENDPOINT (https://127.0.0.1:PORT), REGION, MODEL_ID, AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, NODE_EXTRA_CA_CERTS (the emulator's CA), TURNS (caller turns, default 2).
// Prints one JSON object per line: {"event": name, ...} per output event, {"error": name, ...} if
// the request or the stream failed, {"done": true} at the end. Exit status 0 unless the script
// itself broke.
import {
  BedrockRuntimeClient,
  InvokeModelWithBidirectionalStreamCommand,
} from "@aws-sdk/client-bedrock-runtime";

const env = process.env;
const turns = Number(env.TURNS ?? "2");
const prompt = "js-prompt";
const audio = "js-audio";
const system = "js-system";
const inRate = 16000;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function print(object) {
  process.stdout.write(JSON.stringify(object) + "\n");
}

function event(body) {
  return { chunk: { bytes: encoder.encode(JSON.stringify({ event: body })) } };
}

// Loud noise (voiced for the emulator's energy VAD), then digital silence: one caller turn.
function callerTurnChunks(seed) {
  const chunkSamples = (inRate * 20) / 1000;
  const chunks = [];
  let state = seed;
  for (let n = 0; n < 45; n++) {
    const pcm = Buffer.alloc(chunkSamples * 2);
    if (n < 20) {
      for (let i = 0; i < chunkSamples; i++) {
        state = (state * 1103515245 + 12345) % 2147483648;
        pcm.writeInt16LE(Math.round((state / 2147483648 - 0.5) * 16000), i * 2);
      }
    }
    chunks.push(pcm.toString("base64"));
  }
  return chunks;
}

// Resolved by the output reader once each answer has "played": the caller speaks again only after
// the assistant's audio would have been heard (sooner is a barge-in).
const answered = [];
let answeredCount = 0;
for (let i = 0; i < turns; i++) {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  answered.push({ promise, resolve });
}

async function* input() {
  yield event({
    sessionStart: { inferenceConfiguration: { maxTokens: 1024, topP: 0.9, temperature: 0.7 } },
  });
  yield event({
    promptStart: {
      promptName: prompt,
      textOutputConfiguration: { mediaType: "text/plain" },
      audioOutputConfiguration: {
        voiceId: "matthew",
        mediaType: "audio/lpcm",
        sampleRateHertz: 24000,
        sampleSizeBits: 16,
        channelCount: 1,
        encoding: "base64",
        audioType: "SPEECH",
      },
    },
  });
  yield event({
    contentStart: {
      promptName: prompt,
      contentName: system,
      type: "TEXT",
      interactive: false,
      role: "SYSTEM",
      textInputConfiguration: { mediaType: "text/plain" },
    },
  });
  yield event({ textInput: { promptName: prompt, contentName: system, content: "You are a test agent." } });
  yield event({ contentEnd: { promptName: prompt, contentName: system } });
  yield event({
    contentStart: {
      promptName: prompt,
      contentName: audio,
      type: "AUDIO",
      interactive: true,
      role: "USER",
      audioInputConfiguration: {
        mediaType: "audio/lpcm",
        sampleRateHertz: inRate,
        sampleSizeBits: 16,
        channelCount: 1,
        audioType: "SPEECH",
        encoding: "base64",
      },
    },
  });
  for (let turn = 0; turn < turns; turn++) {
    for (const content of callerTurnChunks(turn + 1)) {
      yield event({ audioInput: { promptName: prompt, contentName: audio, content } });
    }
    await answered[turn].promise;
  }
  yield event({ contentEnd: { promptName: prompt, contentName: audio } });
  yield event({ promptEnd: { promptName: prompt } });
  yield event({ sessionEnd: {} });
}

function summary(name, body) {
  const out = { event: name };
  for (const key of ["role", "type", "stopReason", "content"]) {
    if (key in body && typeof body[key] === "string") {
      out[key] = key === "content" && name === "audioOutput" ? body[key].length : body[key];
    }
  }
  return out;
}

async function main() {
  const client = new BedrockRuntimeClient({
    region: env.REGION,
    endpoint: env.ENDPOINT,
    credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY },
    maxAttempts: 1,
  });
  try {
    const response = await client.send(
      new InvokeModelWithBidirectionalStreamCommand({ modelId: env.MODEL_ID, body: input() }),
    );
    print({ response: response.$metadata.httpStatusCode });
    let audioBytes = 0;
    for await (const item of response.body) {
      if (item.chunk?.bytes) {
        const parsed = JSON.parse(decoder.decode(item.chunk.bytes)).event;
        const [name, body] = Object.entries(parsed)[0];
        print(summary(name, body));
        if (name === "audioOutput") {
          audioBytes += Buffer.from(body.content, "base64").length;
        } else if (name === "contentEnd" && body.type === "AUDIO" && answeredCount < turns) {
          const playbackMs = audioBytes / 48; // 24 kHz, 16-bit mono
          audioBytes = 0;
          setTimeout(answered[answeredCount++].resolve, playbackMs);
        }
      } else {
        const [name, body] = Object.entries(item)[0];
        print({ error: name, message: body?.message ?? null });
      }
    }
  } catch (error) {
    print({
      error: error.name,
      status: error.$metadata?.httpStatusCode ?? null,
      message: error.message,
    });
  } finally {
    // Unblock the input generator if the stream failed before every turn was answered.
    for (const turn of answered) turn.resolve();
    client.destroy();
  }
  print({ done: true });
}

await main();
