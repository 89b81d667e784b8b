// The process-based cluster tests of cluster-processes.test.ts (SIGKILL, SIGSTOP, SIGTERM of instance
// processes), against a real 3-master Redis Cluster that each test starts itself. About as long as the
// standalone file, so only in `npm run test:stress` (STRESS=1); `npm test` skips it.
import t from 'tap'
import { stress } from './helpers/run-budget.js'

if (stress) {
  // The suite reads the target when it runs, so the variable is set before it is imported.
  process.env.AGENT_SSE_REDIS_TARGET = 'cluster'
  await import('./cluster-processes.test.js')
} else {
  t.test('cluster processes against a Redis Cluster', { skip: 'runs in npm run test:stress (STRESS=1)' }, () => {})
}
