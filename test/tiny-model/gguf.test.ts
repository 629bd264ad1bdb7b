import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readGgufHeader } from '../../src/tiny-model/gguf-reader.js';
import { GgufWriter } from '../../src/tiny-model/gguf-writer.js';
import { sha256Hex, writeTinyModel } from '../../src/tiny-model/ensure.js';
import { buildTinyLlamaGguf } from '../../src/tiny-model/tiny-llama.js';

// Omitting any one of these makes llama-server b11669 refuse the model (REPORT §1).
const REQUIRED_KEYS = [
  'general.architecture',
  'llama.context_length',
  'llama.embedding_length',
  'llama.block_count',
  'llama.feed_forward_length',
  'llama.attention.head_count',
  'llama.attention.layer_norm_rms_epsilon',
  'tokenizer.ggml.model',
  'tokenizer.ggml.tokens',
];

t.test('same seed gives identical bytes, another seed different ones', async (t) => {
  const a = sha256Hex(buildTinyLlamaGguf({ seed: 7 }));
  t.equal(sha256Hex(buildTinyLlamaGguf({ seed: 7 })), a);
  t.not(sha256Hex(buildTinyLlamaGguf({ seed: 8 })), a);
  t.equal(sha256Hex(buildTinyLlamaGguf()), sha256Hex(buildTinyLlamaGguf({ seed: 1234 })), 'default seed is 1234');
});

t.test('header is GGUF v3 with the keys llama-server requires', async (t) => {
  const buf = buildTinyLlamaGguf();
  t.equal(buf.subarray(0, 4).toString('latin1'), 'GGUF');
  t.equal(buf.readUInt32LE(4), 3);
  const h = readGgufHeader(buf);
  for (const key of REQUIRED_KEYS) t.ok(h.metadata.has(key), key);
  t.equal(h.metadata.get('general.architecture'), 'llama');
  t.equal(h.metadata.get('tokenizer.ggml.model'), 'llama');
  t.equal(h.metadata.get('llama.context_length'), 2048);
  t.equal(h.metadata.get('llama.embedding_length'), 64);
  t.equal(h.metadata.get('llama.block_count'), 2);
  t.equal(h.metadata.get('llama.attention.head_count_kv'), 4);
  t.match(h.metadata.get('tokenizer.chat_template'), /<\|im_start\|>/);
});

t.test('vocabulary: specials, 256 byte tokens, then printable pieces', async (t) => {
  const h = readGgufHeader(buildTinyLlamaGguf());
  const tokens = h.metadata.get('tokenizer.ggml.tokens');
  const types = h.metadata.get('tokenizer.ggml.token_type');
  if (!Array.isArray(tokens) || !Array.isArray(types)) throw new Error('tokens or token_type missing');
  t.same(tokens.slice(0, 4), ['<unk>', '<s>', '</s>', '<0x00>']);
  t.equal(tokens[258], '<0xFF>');
  t.equal(tokens[259], '\u2581');
  t.equal(tokens[260], '!');
  t.equal(tokens.length, 363);
  t.equal(types.length, tokens.length);
  t.same(types.slice(0, 4), [2, 3, 3, 6]);
  t.equal(h.metadata.get('llama.vocab_size'), tokens.length);
});

t.test('tensors: 21 F32 tensors, aligned, filling the file exactly', async (t) => {
  const buf = buildTinyLlamaGguf();
  const h = readGgufHeader(buf);
  t.equal(h.tensors.length, 21);
  t.equal(h.dataOffset % 32, 0);
  for (const ti of h.tensors) {
    t.equal(ti.type, 0, `${ti.name} is F32`);
    t.equal(ti.offset % 32, 0, `${ti.name} aligned`);
  }
  const last = h.tensors[h.tensors.length - 1];
  if (!last) throw new Error('no tensors');
  const lastBytes = last.dims.reduce((a, b) => a * b, 1) * 4;
  t.equal(buf.length, h.dataOffset + Math.ceil((last.offset + lastBytes) / 32) * 32);
  t.same(h.tensors.find((x) => x.name === 'blk.0.ffn_down.weight')?.dims, [128, 64], 'ne[0] is the row length');
});

t.test('output rows of special and byte tokens are zero, others are not', async (t) => {
  const buf = buildTinyLlamaGguf();
  const h = readGgufHeader(buf);
  const out = h.tensors.find((x) => x.name === 'output.weight');
  if (!out) throw new Error('output.weight missing');
  const rowAbsSum = (row: number): number => {
    let s = 0;
    for (let i = 0; i < 64; i++) s += Math.abs(buf.readFloatLE(h.dataOffset + out.offset + (row * 64 + i) * 4));
    return s;
  };
  for (const id of [0, 1, 2, 3, 100, 258]) t.equal(rowAbsSum(id), 0, `row ${id}`);
  for (const id of [259, 260, 362]) t.ok(rowAbsSum(id) > 0, `row ${id}`);
});

t.test('contextLength option is written', async (t) => {
  const h = readGgufHeader(buildTinyLlamaGguf({ contextLength: 32768 }));
  t.equal(h.metadata.get('llama.context_length'), 32768);
});

t.test('writer rejects tensor data that does not match its dims', async (t) => {
  t.throws(() => new GgufWriter().addTensor('x', [2, 3], new Float32Array(5)), /need 6 values, got 5/);
});

t.test('writeTinyModel skips a file that already has the same content', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tiny-gguf-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'sub', 'tiny.gguf');
  const first = writeTinyModel(path);
  t.equal(first.written, true);
  const mtime = statSync(path).mtimeMs;
  const second = writeTinyModel(path);
  t.equal(second.written, false);
  t.equal(statSync(path).mtimeMs, mtime);
  t.equal(sha256Hex(readFileSync(path)), first.sha256);
});
