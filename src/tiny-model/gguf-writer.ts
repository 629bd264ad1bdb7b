/**
 * A minimal GGUF v3 writer: little-endian, F32 tensors only, and just the
 * metadata value types the tiny test model needs.
 */

export const GGUF_MAGIC = 'GGUF';
export const GGUF_VERSION = 3;
export const GGUF_ALIGNMENT = 32;

/** Metadata value type ids from the GGUF spec. */
export const GgufType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;

const GGML_TYPE_F32 = 0;

type Scalar =
  | { type: typeof GgufType.UINT32 | typeof GgufType.INT32 | typeof GgufType.FLOAT32; value: number }
  | { type: typeof GgufType.BOOL; value: boolean }
  | { type: typeof GgufType.STRING; value: string };

type ArrayValue =
  | { type: typeof GgufType.ARRAY; itemType: typeof GgufType.STRING; values: readonly string[] }
  | {
      type: typeof GgufType.ARRAY;
      itemType: typeof GgufType.INT32 | typeof GgufType.FLOAT32;
      values: readonly number[];
    };

type MetadataValue = Scalar | ArrayValue;

interface Tensor {
  name: string;
  /** ne[0] first: the row length comes first, as ggml orders dimensions. */
  dims: readonly number[];
  data: Float32Array;
}

/** Grows a buffer as values are appended; every number is little-endian. */
class ByteSink {
  #buf = Buffer.alloc(1 << 16);
  #len = 0;

  get length(): number {
    return this.#len;
  }

  #reserve(n: number): number {
    if (this.#len + n > this.#buf.length) {
      const next = Buffer.alloc(Math.max(this.#buf.length * 2, this.#len + n));
      this.#buf.copy(next, 0, 0, this.#len);
      this.#buf = next;
    }
    const at = this.#len;
    this.#len += n;
    return at;
  }

  u8(v: number): void {
    this.#buf.writeUInt8(v, this.#reserve(1));
  }
  u32(v: number): void {
    this.#buf.writeUInt32LE(v, this.#reserve(4));
  }
  i32(v: number): void {
    this.#buf.writeInt32LE(v, this.#reserve(4));
  }
  f32(v: number): void {
    this.#buf.writeFloatLE(v, this.#reserve(4));
  }
  u64(v: number): void {
    this.#buf.writeBigUInt64LE(BigInt(v), this.#reserve(8));
  }
  bytes(b: Uint8Array): void {
    const at = this.#reserve(b.length);
    this.#buf.set(b, at);
  }
  string(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.bytes(b);
  }
  padTo(alignment: number): void {
    const pad = (alignment - (this.#len % alignment)) % alignment;
    this.#reserve(pad); // Buffer.alloc zero-fills, so the padding is already zeros.
  }
  toBuffer(): Buffer {
    return Buffer.from(this.#buf.subarray(0, this.#len));
  }
}

export class GgufWriter {
  readonly #metadata: Array<[string, MetadataValue]> = [];
  readonly #tensors: Tensor[] = [];

  addUint32(key: string, value: number): this {
    return this.#add(key, { type: GgufType.UINT32, value });
  }
  addInt32(key: string, value: number): this {
    return this.#add(key, { type: GgufType.INT32, value });
  }
  addFloat32(key: string, value: number): this {
    return this.#add(key, { type: GgufType.FLOAT32, value });
  }
  addBool(key: string, value: boolean): this {
    return this.#add(key, { type: GgufType.BOOL, value });
  }
  addString(key: string, value: string): this {
    return this.#add(key, { type: GgufType.STRING, value });
  }
  addStringArray(key: string, values: readonly string[]): this {
    return this.#add(key, { type: GgufType.ARRAY, itemType: GgufType.STRING, values });
  }
  addInt32Array(key: string, values: readonly number[]): this {
    return this.#add(key, { type: GgufType.ARRAY, itemType: GgufType.INT32, values });
  }
  addFloat32Array(key: string, values: readonly number[]): this {
    return this.#add(key, { type: GgufType.ARRAY, itemType: GgufType.FLOAT32, values });
  }

  addTensor(name: string, dims: readonly number[], data: Float32Array): this {
    const elements = dims.reduce((a, b) => a * b, 1);
    if (elements !== data.length) {
      throw new Error(`tensor ${name}: dims [${dims.join(', ')}] need ${elements} values, got ${data.length}`);
    }
    this.#tensors.push({ name, dims, data });
    return this;
  }

  toBuffer(): Buffer {
    const out = new ByteSink();
    out.bytes(Buffer.from(GGUF_MAGIC, 'ascii'));
    out.u32(GGUF_VERSION);
    out.u64(this.#tensors.length);
    out.u64(this.#metadata.length);
    for (const [key, value] of this.#metadata) {
      out.string(key);
      writeValue(out, value);
    }
    let offset = 0;
    for (const t of this.#tensors) {
      out.string(t.name);
      out.u32(t.dims.length);
      for (const d of t.dims) out.u64(d);
      out.u32(GGML_TYPE_F32);
      out.u64(offset);
      offset = alignUp(offset + t.data.byteLength, GGUF_ALIGNMENT);
    }
    out.padTo(GGUF_ALIGNMENT);
    for (const t of this.#tensors) {
      out.bytes(f32Bytes(t.data));
      out.padTo(GGUF_ALIGNMENT);
    }
    return out.toBuffer();
  }

  #add(key: string, value: MetadataValue): this {
    if (this.#metadata.some(([k]) => k === key)) throw new Error(`duplicate GGUF key ${key}`);
    this.#metadata.push([key, value]);
    return this;
  }
}

function writeValue(out: ByteSink, v: MetadataValue): void {
  out.u32(v.type);
  switch (v.type) {
    case GgufType.UINT32:
      return out.u32(v.value);
    case GgufType.INT32:
      return out.i32(v.value);
    case GgufType.FLOAT32:
      return out.f32(v.value);
    case GgufType.BOOL:
      return out.u8(v.value ? 1 : 0);
    case GgufType.STRING:
      return out.string(v.value);
    case GgufType.ARRAY:
      return writeArray(out, v);
  }
}

function writeArray(out: ByteSink, v: ArrayValue): void {
  out.u32(v.itemType);
  out.u64(v.values.length);
  if (v.itemType === GgufType.STRING) {
    for (const s of v.values) out.string(s);
  } else if (v.itemType === GgufType.INT32) {
    for (const n of v.values) out.i32(n);
  } else {
    for (const n of v.values) out.f32(n);
  }
}

/** Raw little-endian bytes of a Float32Array, independent of host byte order. */
function f32Bytes(data: Float32Array): Buffer {
  const b = Buffer.alloc(data.length * 4);
  for (let i = 0; i < data.length; i++) b.writeFloatLE(data[i] ?? 0, i * 4);
  return b;
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}
