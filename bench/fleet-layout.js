// The fleet scenario's layout, shared by bench/run.js and bench/load-client.js so both agree on who watches what.
//
// `agents` agents (ids `agent-0` … `agent-{agents-1}`); `conns` fleet connections, connection c watching the
// `perConn` consecutive agents (mod `agents`) that start at floor(c × agents / conns). The windows overlap and are
// spread evenly, so every agent is watched by conns × perConn / agents connections (±1 when that is not an
// integer). The single-agent arm opens one connection per (fleet connection, agent) pair: the same deliveries.

export function agentId (index) {
  return `agent-${index}`
}

/** For each fleet connection, the indexes of the agents it watches. */
export function fleetLayout ({ agents, conns, perConn }) {
  if (perConn > agents) throw new Error(`perConn (${perConn}) > agents (${agents})`)
  const layout = []
  for (let c = 0; c < conns; c++) {
    const start = Math.floor((c * agents) / conns)
    const watched = new Array(perConn)
    for (let k = 0; k < perConn; k++) watched[k] = (start + k) % agents
    layout.push(watched)
  }
  return layout
}

/** How many connections (of either arm) watch each agent: an array indexed by agent. */
export function watchersPerAgent (params) {
  const counts = new Array(params.agents).fill(0)
  for (const watched of fleetLayout(params)) for (const a of watched) counts[a]++
  return counts
}
