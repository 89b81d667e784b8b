// cluster-key-slot ships no types (lib/redis/store.ts imports it). Not part of the package: no declaration of ours mentions it.
declare module 'cluster-key-slot' {
  /** The Redis Cluster hash slot of a key: CRC16 of its hash tag (`{…}`) if it has one, else of the whole key. */
  function calculateSlot (key: string | Buffer): number
  export = calculateSlot
}
