export { type Clock, systemClock } from './clock.js';
export { type Random, randomInt, seededRandom, systemRandom } from './random.js';
export {
  assert,
  ClosedError,
  CorruptSegmentError,
  type ErrorKind,
  InvalidArgumentError,
  InvalidConfigError,
  isWalshipError,
  StoreTimeoutError,
  StoreUnavailableError,
  WalshipError,
  type WalshipErrorOptions,
} from './walship-error.js';
