/** Identify (ID.AM-1/2/3, ID.IS-1/4): devices, software, data flows and cryptography of a running broker. */
export { identify } from './identify.js';
export type { Identify, IdentifyOptions, FlowFormat } from './identify.js';
export { Devices, certificateView, DEFAULT_DEVICE_CAPACITY } from './devices.js';
export type { DeviceInventory, DeviceView, DeviceRecord, ExpectedDevice, CertificateView } from './devices.js';
export { FlowMap, DEFAULT_MAX_EDGES } from './flows.js';
export type { DataFlowMap, FlowEdge, FlowJson, FlowDirection, FlowMapOptions } from './flows.js';
export { TopicTree, filterReaches, DEFAULT_GENERALIZE_AFTER, DEFAULT_MAX_TOPIC_NODES } from './topic-tree.js';
export type { TopicTreeOptions } from './topic-tree.js';
export { toMermaid, toDot } from './render.js';
export { softwareInventory, toCycloneDx, npmPurl } from './software.js';
export type { SoftwareInventory, SoftwareComponent, SoftwareOptions, CycloneDxBom, CycloneDxComponent } from './software.js';
export { cryptoReport, weakSuite, Negotiated } from './crypto.js';
export type { CryptoReport, ListenerCrypto, NegotiatedCount, ServerCertificateView } from './crypto.js';
