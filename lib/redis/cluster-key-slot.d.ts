// cluster-key-slot ships no types.
declare module 'cluster-key-slot' {
  /** The Redis Cluster hash slot of a key: CRC16 of its hash tag (`{…}`) if it has one, else of the whole key. */
  function calculateSlot (key: string | Buffer): number
  export = calculateSlot
}
