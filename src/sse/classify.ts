/**
 * What one event means for the held response: keep holding, or decide. Holding is only for events that
 * say nothing yet (pings, role-only chunks, preambles, progress); anything not recognised decides, so an
 * unknown upstream is never held for long.
 */
import type { EventSink, SseEvent } from './event-reader.js';

/** The error as the upstream sent it: a parsed JSON value, or raw text that was not JSON. */
export type UpstreamErrorPayload = { readonly json: unknown } | { readonly text: string };

export type Verdict =
  | { readonly kind: 'hold' }
  | { readonly kind: 'output' }
  | { readonly kind: 'done' }
  | { readonly kind: 'error'; readonly payload: UpstreamErrorPayload };

const HOLD: Verdict = { kind: 'hold' };
const OUTPUT: Verdict = { kind: 'output' };
const DONE: Verdict = { kind: 'done' };

type Json = Record<string, unknown>;

/** The Responses API preamble: llama-server b11669 sends all four before the first text. */
const RESPONSES_PREAMBLE = new Set([
  'response.created',
  'response.in_progress',
  'response.output_item.added',
  'response.content_part.added',
]);
const ANTHROPIC_PREAMBLE = new Set(['message_start', 'content_block_start', 'ping']);

export function classifyEvent(ev: SseEvent): Verdict {
  if (ev.legacyError !== undefined) return errorFrom(ev.legacyError);
  if (ev.event === 'error') return errorFrom(ev.data ?? '');
  const data = ev.data;
  if (data === undefined || data === '') return HOLD;
  if (data === '[DONE]') return DONE;
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    return OUTPUT; // not ours to judge: unknown shapes decide
  }
  if (json === null) return HOLD; // llama-server sends `data: null` between prompts of a multi-prompt request
  if (!isObject(json)) return OUTPUT;
  return classifyObject(json, ev.event);
}

function classifyObject(obj: Json, eventName: string): Verdict {
  if (obj.error) return { kind: 'error', payload: { json: obj.error } };
  if (isBareError(obj)) return { kind: 'error', payload: { json: obj } };
  const type = typeof obj.type === 'string' ? obj.type : eventName;
  if (type === 'response.failed') {
    const response = isObject(obj.response) ? obj.response : {};
    return { kind: 'error', payload: { json: response.error ?? { message: 'response failed' } } };
  }
  if (RESPONSES_PREAMBLE.has(type) || ANTHROPIC_PREAMBLE.has(type)) return HOLD;
  if (type.startsWith('response.') && type.endsWith('.delta')) return nonEmpty(obj.delta) ? OUTPUT : HOLD;
  if (Array.isArray(obj.choices)) return choicesSayAnything(obj.choices) ? OUTPUT : HOLD;
  if (typeof obj.content === 'string' && !('type' in obj)) {
    // native /completion: an empty piece (a partial UTF-8 token, a progress event) says nothing yet
    return obj.content !== '' || obj.stop === true ? OUTPUT : HOLD;
  }
  if ('prompt_progress' in obj) return HOLD;
  return OUTPUT;
}

/** The first event that decides, among those `read` hands to its sink; reading stops there. */
export function firstDecision(read: (sink: EventSink) => unknown): Verdict | undefined {
  let verdict: Verdict | undefined;
  read((ev) => {
    const v = classifyEvent(ev);
    if (v.kind === 'hold') return false;
    verdict = v;
    return true;
  });
  return verdict;
}

/**
 * b3655–b4274 sent the bare error object as `data:` before the `error:` line, and ik_llama.cpp did the
 * same from late 2025: `{"code":…,"message":…,"type":…}` with no `error` wrapper.
 */
function isBareError(obj: Json): boolean {
  return typeof obj.message === 'string' && 'code' in obj && !('choices' in obj) && !('content' in obj);
}

function choicesSayAnything(choices: unknown[]): boolean {
  for (const choice of choices) {
    if (!isObject(choice)) return true;
    if (choice.finish_reason !== null && choice.finish_reason !== undefined) return true;
    if (nonEmpty(choice.text)) return true;
    const delta = choice.delta;
    if (delta === undefined || delta === null) continue;
    if (!isObject(delta)) return true;
    for (const key in delta) {
      if (key === 'role') continue;
      if (nonEmpty(delta[key])) return true;
    }
  }
  return false;
}

function nonEmpty(value: unknown): boolean {
  if (value === null || value === undefined || value === '') return false;
  if (Array.isArray(value)) return value.length > 0;
  return true;
}

function errorFrom(text: string): Verdict {
  try {
    return { kind: 'error', payload: { json: JSON.parse(text) } };
  } catch {
    return { kind: 'error', payload: { text } };
  }
}

export function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Is this the last event of a stream that ended well (or ended by reporting its error)? */
export function isFinalEvent(ev: SseEvent): boolean {
  const verdict = classifyEvent(ev);
  if (verdict.kind === 'done' || verdict.kind === 'error') return true;
  if (ev.event === 'message_stop' || ev.event === 'response.completed' || ev.event === 'response.incomplete') return true;
  if (ev.data === undefined) return false;
  let json: unknown;
  try {
    json = JSON.parse(ev.data);
  } catch {
    return false;
  }
  if (!isObject(json)) return false;
  if (json.type === 'message_stop' || json.type === 'response.completed' || json.type === 'response.incomplete') return true;
  if (json.stop === true) return true; // native /completion
  // Chat and completion streams before b3754 ended with the finish_reason chunk, with no [DONE].
  if (Array.isArray(json.choices)) {
    if (json.choices.length === 0) return isObject(json.usage); // include_usage: the last chunk before [DONE]
    return json.choices.every((c) => isObject(c) && typeof c.finish_reason === 'string');
  }
  return false;
}
