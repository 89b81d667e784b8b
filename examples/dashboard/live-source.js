// An EventSource class for the typed client that tells the page when its connection opens, drops
// or closes. The client hands back no EventSource for a fleet stream, and a page must not show
// numbers as live while its stream is down (the server gone, a restart, a refusal).

export const CONNECTING = 0
export const OPEN = 1
export const CLOSED = 2

/** `onState(readyState)` runs on every change of the newest EventSource the class made. */
export function reportingEventSource (onState) {
  let newest = null
  return class ReportingEventSource extends EventSource {
    constructor (url) {
      super(url)
      newest = this
      const report = () => { if (newest === this) onState(this.readyState) }
      this.addEventListener('open', report)
      this.addEventListener('error', report)
      report()
    }

    close () {
      super.close()
      if (newest === this) onState(CLOSED)
    }
  }
}
