// The supervisor's state table: every move it allows, and every one it refuses.
import t from 'tap';
import { canMove, type ChildState } from '../../src/supervisor/states.js';

const STATES: ChildState[] = ['starting', 'ready', 'restarting', 'crash-loop', 'stopping', 'stopped'];
const ALLOWED = new Set([
  'starting→ready',
  'starting→restarting', // exited or timed out while loading
  'starting→crash-loop',
  'starting→stopping',
  'ready→restarting', // crashed or unhealthy
  'ready→crash-loop',
  'ready→stopping',
  'restarting→starting',
  'restarting→crash-loop',
  'restarting→stopping',
  'crash-loop→stopping', // stays down until shutdown
  'stopping→stopped',
]);

t.test('exactly the documented moves are allowed', async (t) => {
  for (const from of STATES) {
    for (const to of STATES) {
      t.equal(canMove(from, to), ALLOWED.has(`${from}→${to}`), `${from} → ${to}`);
    }
  }
});

t.test('stopped is final; every state can be stopped', async (t) => {
  t.notOk(STATES.some((to) => canMove('stopped', to)));
  for (const from of STATES.filter((s) => s !== 'stopping' && s !== 'stopped')) t.ok(canMove(from, 'stopping'), from);
});
