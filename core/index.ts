export { type AdminAction, createAdminHttpHandler } from './admin-http.js';
export { type Clock, isoTime, parseTimeMs, systemClock, type Timer, WALL_MS_MAX } from './clock.js';
export {
  ERROR_CODES,
  ERROR_KINDS,
  type ErrorCode,
  type ErrorCodeSpec,
  HTTP_ANSWER_CODES,
  type HttpAnswerCode,
  type HttpAnswerCodeSpec,
  isErrorCode,
} from './error-codes.js';
export { fileExists } from './files.js';
export { createHealthHandler, type HealthVerdict, healthOf } from './health.js';
export { AuthFailureLimiter, createHttpAuthenticator, type HttpAuth } from './http-auth.js';
export {
  type HttpHandler,
  type HttpListenerOptions,
  loadTlsCredentials,
  MAX_HEADER_BYTES,
  MAX_URL_CHARS,
  type RunningHttpServer,
  sendJson,
  startHttpServer,
  type TlsCredentials,
} from './http-server.js';
export { listen } from './listen.js';
export { renderMarkdownTable } from './markdown-table.js';
export { nodeUrl } from './node-url.js';
export { type Random, randomInt, seededRandom, systemRandom } from './random.js';
export {
  type ClusterStatus,
  type ClusterStatusNode,
  createStatusPageHandler,
  STATUS_PAGE_CSP,
  STATUS_PAGE_HTML,
  STATUS_PAGE_LINE_COLOUR,
  STATUS_PAGE_MARKER_COLOURS,
  STATUS_PAGE_SWITCHING_COLOUR,
  STATUS_PAGE_TABLE_COLOURS,
} from './status-page.js';
export { type StatusPathOptions, statusPathHider } from './status-paths.js';
export {
  assert,
  ClosedError,
  CorruptSegmentError,
  deserializeWalshipError,
  type ErrorKind,
  InvalidArgumentError,
  InvalidConfigError,
  isWalshipError,
  type SerializedWalshipError,
  StoreTimeoutError,
  StoreUnavailableError,
  serializeWalshipError,
  WalshipError,
  type WalshipErrorOptions,
} from './walship-error.js';
