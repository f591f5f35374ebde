/**
 * @bastion/persistence: encrypted Aedes persistence (PR.SS-6), Redis stores and clusters, key
 * rotation (RC.RP-7), backup and restore (RC.RP-8). See docs/persistence.md.
 */
export { openStore, Store, MEMORY_SEAL_AFTER } from './store.js';
export { SealAtRest } from './seal-at-rest.js';
export type { StoreConfig, OpenStoreOptions } from './store.js';
export { EncryptingPersistence } from './encrypting-persistence.js';
export type { AedesPersistence, EncryptingPersistenceOptions } from './encrypting-persistence.js';
export { PacketCipher, copyPacket } from './records.js';
export type { StoredPacket } from './records.js';
export { Sealer, isSealed, sealedKeyId, OVERHEAD as SEAL_OVERHEAD } from './seal.js';
export type { SealKind, OpenFailure, Context as SealContext } from './seal.js';
export { Keyring, keyFromBytes, parseKeyText, generateKeyFile, KEY_BYTES } from './keys.js';
export type { KeySource, PersistenceKey, KeyPurpose } from './keys.js';
export { ClusterState, STATE_CHANNEL, clusterOrigin, isClusterOrigin } from './cluster-state.js';
export type { ClusterStateChannel, StateListener, StateMeta } from './cluster-state.js';
export { createSealedMQ, MAX_CLUSTER_MESSAGE_AGE_MS } from './sealed-mq.js';
export { ConnectionHealth, redisOptions, redactUrl, scanKeys } from './redis.js';
export type { RedisConfig, RedisTlsConfig } from './redis.js';
export { checkStore, META_KEYS } from './store-meta.js';
export type { StoreEvent, StoreEventSink } from './events.js';
export { connectStore } from './store.js';
export type { StoreConnection } from './store.js';
export { rotateStore } from './rotate.js';
export type { RotateResult, RotateProblem } from './rotate.js';
export { writeBackup, verifyBackup, restoreBackup, BACKUP_FORMAT } from './backup.js';
export type { BackupHeader, Progress } from './backup.js';
export { decodeRecord, encodeRecord, payloadLocation } from './redis-layout.js';
