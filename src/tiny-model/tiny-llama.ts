import { GgufWriter } from './gguf-writer.js';
import { mulberry32 } from './prng.js';
import { BOS_ID, buildVocab, EOS_ID, UNK_ID } from './vocab.js';

export interface TinyLlamaOptions {
  seed?: number;
  contextLength?: number;
}

export const TINY_LLAMA_DEFAULT_SEED = 1234;

const N_EMBD = 64;
const N_LAYER = 2;
const N_HEAD = 4;
const N_HEAD_KV = 4;
const N_FF = 128;
const DEFAULT_CONTEXT = 2048;

/**
 * Every token embedding carries this constant in dimension 0. The residual
 * stream keeps it, so after the final RMS norm the hidden state always points
 * roughly the same way, and output rows with a positive weight there (the
 * printable tokens) get logits far above the all-zero rows of the special and
 * byte tokens. That is what keeps EOS and raw bytes out of the samples.
 */
const EMBD_BIAS = 4;
const OUTPUT_BIAS_WEIGHT = 3;

/** A plain ChatML template, so the server renders `<|im_start|>role\n…<|im_end|>\n`. */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}" +
  "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/**
 * A random-weight llama-architecture model small enough (about 0.5 MB) to
 * load in milliseconds, for tests that need a real llama-server.
 * The same options always give the same bytes.
 */
export function buildTinyLlamaGguf(opts: TinyLlamaOptions = {}): Buffer {
  const seed = opts.seed ?? TINY_LLAMA_DEFAULT_SEED;
  const contextLength = opts.contextLength ?? DEFAULT_CONTEXT;
  const vocab = buildVocab();
  const w = new GgufWriter();
  addModelMetadata(w, contextLength, vocab.tokens.length);
  w.addString('tokenizer.ggml.model', 'llama')
    .addStringArray('tokenizer.ggml.tokens', vocab.tokens)
    .addFloat32Array('tokenizer.ggml.scores', vocab.scores)
    .addInt32Array('tokenizer.ggml.token_type', vocab.types)
    .addUint32('tokenizer.ggml.unknown_token_id', UNK_ID)
    .addUint32('tokenizer.ggml.bos_token_id', BOS_ID)
    .addUint32('tokenizer.ggml.eos_token_id', EOS_ID)
    .addBool('tokenizer.ggml.add_bos_token', true)
    .addString('tokenizer.chat_template', CHATML_TEMPLATE);
  addTensors(w, mulberry32(seed), vocab.tokens.length, vocab.silentIds);
  return w.toBuffer();
}

function addModelMetadata(w: GgufWriter, contextLength: number, vocabSize: number): void {
  w.addString('general.architecture', 'llama')
    .addString('general.name', 'tiny-llama')
    .addUint32('general.alignment', 32)
    .addUint32('llama.context_length', contextLength)
    .addUint32('llama.embedding_length', N_EMBD)
    .addUint32('llama.block_count', N_LAYER)
    .addUint32('llama.feed_forward_length', N_FF)
    .addUint32('llama.attention.head_count', N_HEAD)
    .addUint32('llama.attention.head_count_kv', N_HEAD_KV)
    .addUint32('llama.rope.dimension_count', N_EMBD / N_HEAD)
    .addFloat32('llama.rope.freq_base', 10000)
    .addFloat32('llama.attention.layer_norm_rms_epsilon', 1e-5)
    .addUint32('llama.vocab_size', vocabSize);
}

function addTensors(w: GgufWriter, rng: () => number, nVocab: number, silentIds: number[]): void {
  const uniform = (n: number, scale: number): Float32Array => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = (rng() * 2 - 1) * scale;
    return a;
  };
  const ones = (n: number): Float32Array => new Float32Array(n).fill(1);
  const nEmbdKv = (N_EMBD / N_HEAD) * N_HEAD_KV;

  const embd = uniform(N_EMBD * nVocab, 0.5);
  for (let t = 0; t < nVocab; t++) embd[t * N_EMBD] = EMBD_BIAS;
  w.addTensor('token_embd.weight', [N_EMBD, nVocab], embd);
  w.addTensor('output_norm.weight', [N_EMBD], ones(N_EMBD));
  w.addTensor('output.weight', [N_EMBD, nVocab], outputWeights(uniform(N_EMBD * nVocab, 0.5), nVocab, silentIds));

  for (let l = 0; l < N_LAYER; l++) {
    const p = `blk.${l}`;
    w.addTensor(`${p}.attn_norm.weight`, [N_EMBD], ones(N_EMBD));
    w.addTensor(`${p}.attn_q.weight`, [N_EMBD, N_EMBD], uniform(N_EMBD * N_EMBD, 0.3));
    w.addTensor(`${p}.attn_k.weight`, [N_EMBD, nEmbdKv], uniform(N_EMBD * nEmbdKv, 0.3));
    w.addTensor(`${p}.attn_v.weight`, [N_EMBD, nEmbdKv], uniform(N_EMBD * nEmbdKv, 0.1));
    w.addTensor(`${p}.attn_output.weight`, [N_EMBD, N_EMBD], uniform(N_EMBD * N_EMBD, 0.1));
    w.addTensor(`${p}.ffn_norm.weight`, [N_EMBD], ones(N_EMBD));
    w.addTensor(`${p}.ffn_gate.weight`, [N_EMBD, N_FF], uniform(N_EMBD * N_FF, 0.2));
    w.addTensor(`${p}.ffn_up.weight`, [N_EMBD, N_FF], uniform(N_EMBD * N_FF, 0.2));
    w.addTensor(`${p}.ffn_down.weight`, [N_FF, N_EMBD], uniform(N_FF * N_EMBD, 0.1));
  }
}

function outputWeights(rows: Float32Array, nVocab: number, silentIds: number[]): Float32Array {
  for (let t = 0; t < nVocab; t++) rows[t * N_EMBD] = OUTPUT_BIAS_WEIGHT;
  for (const t of silentIds) rows.fill(0, t * N_EMBD, (t + 1) * N_EMBD);
  return rows;
}
