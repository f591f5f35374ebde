/** Nothing global yet: each test file starts its own brokers on free loopback ports. */
export default function setup(): void {}
