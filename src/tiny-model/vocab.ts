/** Token types as llama.cpp numbers them (tokenizer.ggml.token_type). */
export const TokenType = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  BYTE: 6,
} as const;

export interface Vocab {
  tokens: string[];
  scores: number[];
  types: number[];
  /** Ids whose output row is zero, so sampling (almost) never picks them. */
  silentIds: number[];
}

export const UNK_ID = 0;
export const BOS_ID = 1;
export const EOS_ID = 2;

/** SentencePiece marks a word-initial space with U+2581. */
const SPACE = '\u2581';

/**
 * Two-letter pieces the SentencePiece merge can actually reach from single
 * characters, plus one built from two of them; longer words would need every
 * intermediate piece in the vocabulary.
 */
const WORDS = [`${SPACE}t`, 'he', `${SPACE}the`, 'in', 'er', 'an', 'on', `${SPACE}a`, `${SPACE}I`];

/** A SentencePiece-style ("llama" tokenizer model) vocabulary of 363 tokens. */
export function buildVocab(): Vocab {
  const tokens: string[] = ['<unk>', '<s>', '</s>'];
  const types: number[] = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL];
  // Byte-fallback tokens let any UTF-8 text (newlines, emoji) be tokenized.
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(TokenType.BYTE);
  }
  const silentIds = tokens.map((_, id) => id);
  tokens.push(SPACE);
  for (let c = 33; c <= 126; c++) tokens.push(String.fromCharCode(c));
  tokens.push(...WORDS);
  while (types.length < tokens.length) types.push(TokenType.NORMAL);
  // SentencePiece scores rank pieces; later (rarer) pieces score lower.
  const scores = tokens.map((_, id) => (types[id] === TokenType.NORMAL ? -id : 0));
  return { tokens, scores, types, silentIds };
}
