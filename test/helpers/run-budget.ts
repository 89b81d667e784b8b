import fc from 'fast-check'

/**
 * `STRESS=1` (set by `npm run test:stress`, run before a release and for the issue notes): the full
 * sizes, 10,000 lifecycle schedules, a long cluster search and the 10,000-cycle soak. Without it the
 * randomised tests run for a time budget and the soak is shorter, so that `npm test` stays green and
 * within minutes on a slow or busy 2-core CI machine.
 */
export const stress = flag(process.env.STRESS)

function flag (value: string | undefined): boolean {
  return value !== undefined && value !== '' && value !== '0' && value !== 'false'
}

/** An integer from the environment (fast-check seeds can be negative), or undefined when it is not set. */
export function envNumber (name: string): number | undefined {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return undefined
  const value = Number(raw)
  if (!Number.isSafeInteger(value)) throw new Error(`${name} must be an integer (got ${JSON.stringify(raw)})`)
  return value
}

export interface RunBudget {
  /** Always this many runs, however slow the machine: the floor that makes a run meaningful. */
  minRuns: number
  /** Never more than this many. */
  maxRuns: number
  /** Past the floor, only as many more runs as fit in this, at the pace the runs so far went. */
  budgetMs: number
  /**
   * Stops everything, shrinking included, after this long (fast-check's interruptAfterTimeLimit),
   * so that the file ends within tap's timeout and still reports the smallest failure found so far.
   */
  hardLimitMs?: number
  /** Reproduces one reported failure: only the run at this seed and path. */
  seed?: number
  path?: string
}

export interface BudgetOutcome {
  /** Runs that completed (all of them passed, or this throws). */
  runs: number
  elapsedMs: number
  /** The hard limit cut the runs short. */
  interrupted: boolean
}

/**
 * fc.assert sized by time: first `minRuns` runs, then more batches sized from the measured pace
 * until `budgetMs` is spent or `maxRuns` reached. Each batch has its own random seed, which
 * fast-check prints with the counterexample if it fails (pass it back as `seed` and `path`).
 */
export async function assertWithinBudget<Ts extends [unknown, ...unknown[]]> (property: fc.IAsyncProperty<Ts>, budget: RunBudget): Promise<BudgetOutcome> {
  const started = Date.now()
  const outcome: BudgetOutcome = { runs: 0, elapsedMs: 0, interrupted: false }
  const batch = async (numRuns: number, replay: Partial<fc.Parameters<Ts>> = {}): Promise<void> => {
    const left = budget.hardLimitMs === undefined ? undefined : Math.max(1, budget.hardLimitMs - (Date.now() - started))
    const details = await fc.check(property, { numRuns, ...(left === undefined ? {} : { interruptAfterTimeLimit: left }), ...replay })
    outcome.runs += details.numRuns
    outcome.interrupted ||= details.interrupted
    // What fc.assert throws.
    if (details.failed) throw new Error(await fc.asyncDefaultReportMessage(details), { cause: details.errorInstance })
  }

  if (budget.seed !== undefined || budget.path !== undefined) {
    await batch(budget.maxRuns, { ...(budget.seed === undefined ? {} : { seed: budget.seed }), ...(budget.path === undefined ? {} : { path: budget.path }) })
  } else {
    await batch(Math.min(budget.minRuns, budget.maxRuns))
    // A few batches: the pace measured on the first runs (cold code) is refined by the later ones.
    for (let batches = 1; batches < 4 && !outcome.interrupted && outcome.runs < budget.maxRuns; batches++) {
      const spent = Date.now() - started
      const more = Math.min(budget.maxRuns - outcome.runs, Math.floor((budget.budgetMs - spent) / (spent / Math.max(1, outcome.runs))))
      if (more < 1) break
      await batch(more)
    }
  }
  outcome.elapsedMs = Date.now() - started
  return outcome
}
