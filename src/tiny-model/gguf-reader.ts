import { GgufType } from './gguf-writer.js';

/** What a GGUF file's header says; tensor data is not decoded. */
export interface GgufHeader {
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  /** Byte offset of the tensor data section. */
  dataOffset: number;
}

export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface GgufTensorInfo {
  name: string;
  dims: number[];
  type: number;
  offset: number;
}

/**
 * Parses the header of a GGUF v2/v3 file, so tests can check what the
 * generator wrote without trusting the writer's own view of it.
 */
export function readGgufHeader(buf: Buffer): GgufHeader {
  const r = new Cursor(buf);
  const magic = buf.subarray(0, 4).toString('latin1');
  if (magic !== 'GGUF') throw new Error(`not a GGUF file (magic ${JSON.stringify(magic)})`);
  r.skip(4);
  const version = r.u32();
  const tensorCount = r.u64();
  const kvCount = r.u64();
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = r.string();
    metadata.set(key, readValue(r, r.u32()));
  }
  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = r.string();
    const nDims = r.u32();
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(r.u64());
    tensors.push({ name, dims, type: r.u32(), offset: r.u64() });
  }
  const alignmentValue = metadata.get('general.alignment');
  const alignment = typeof alignmentValue === 'number' ? alignmentValue : 32;
  return { version, metadata, tensors, dataOffset: Math.ceil(r.pos / alignment) * alignment };
}

function readValue(r: Cursor, type: number): GgufValue {
  switch (type) {
    case GgufType.UINT8:
      return r.buf.readUInt8(r.take(1));
    case GgufType.INT8:
      return r.buf.readInt8(r.take(1));
    case GgufType.UINT16:
      return r.buf.readUInt16LE(r.take(2));
    case GgufType.INT16:
      return r.buf.readInt16LE(r.take(2));
    case GgufType.UINT32:
      return r.u32();
    case GgufType.INT32:
      return r.buf.readInt32LE(r.take(4));
    case GgufType.FLOAT32:
      return r.buf.readFloatLE(r.take(4));
    case GgufType.BOOL:
      return r.buf.readUInt8(r.take(1)) !== 0;
    case GgufType.STRING:
      return r.string();
    case GgufType.UINT64:
      return r.buf.readBigUInt64LE(r.take(8));
    case GgufType.INT64:
      return r.buf.readBigInt64LE(r.take(8));
    case GgufType.FLOAT64:
      return r.buf.readDoubleLE(r.take(8));
    case GgufType.ARRAY: {
      const itemType = r.u32();
      const n = r.u64();
      const items: GgufValue[] = [];
      for (let i = 0; i < n; i++) items.push(readValue(r, itemType));
      return items;
    }
    default:
      throw new Error(`unknown GGUF value type ${type} at byte ${r.pos}`);
  }
}

class Cursor {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  take(n: number): number {
    if (this.pos + n > this.buf.length) throw new Error(`GGUF truncated at byte ${this.pos}`);
    const at = this.pos;
    this.pos += n;
    return at;
  }
  skip(n: number): void {
    this.take(n);
  }
  u32(): number {
    return this.buf.readUInt32LE(this.take(4));
  }
  /** Counts and offsets fit in a JS number for any file this project handles. */
  u64(): number {
    return Number(this.buf.readBigUInt64LE(this.take(8)));
  }
  string(): string {
    const len = this.u64();
    const at = this.take(len);
    return this.buf.toString('utf8', at, at + len);
  }
}
