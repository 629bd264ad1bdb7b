/**
 * The states of the supervised llama-server and the moves between them. Only Supervisor changes state,
 * and only through `move()`, which refuses a move this table does not allow.
 *
 *   starting ──► ready ──► restarting ──► starting …
 *      │           │            │
 *      └───────────┴────────────┴──► crash-loop (stays down)
 *   any ──► stopping ──► stopped
 */
export type ChildState = 'starting' | 'ready' | 'restarting' | 'crash-loop' | 'stopping' | 'stopped';

const ALLOWED: Readonly<Record<ChildState, readonly ChildState[]>> = {
  starting: ['ready', 'restarting', 'crash-loop', 'stopping'],
  ready: ['restarting', 'crash-loop', 'stopping'],
  restarting: ['starting', 'crash-loop', 'stopping'],
  'crash-loop': ['stopping'],
  stopping: ['stopped'],
  stopped: [],
};

export function canMove(from: ChildState, to: ChildState): boolean {
  return ALLOWED[from].includes(to);
}
