/**
 * InfluxDB Line Protocol for walship: the parser (text v1, binary fields of v2/v3) and the HTTP and
 * TCP surfaces, compatible with QuestDB's and its official clients (shared/reference/ilp-http.md).
 */

export type { HttpAuth as IlpHttpAuth } from '../core/index.js';
export {
  createIlpHttpHandler,
  DEFAULT_MAX_REQUEST_BYTES,
  type IlpHttpHandler,
  type IlpHttpOptions,
} from './http-handler.js';
export type {
  IlpBatchIdentity,
  IlpCommit,
  IlpCommitResult,
  IlpLineSource,
  IlpRequestInfo,
  IlpSliceCommit,
} from './ilp-commit.js';
export type { IlpField, IlpFieldValue, IlpLine, IlpSymbol } from './ilp-line.js';
export { IlpParseError } from './ilp-parse-error.js';
export {
  ILP_OUTCOMES,
  type IlpOutcome,
  type IlpRequestEvent,
  ilpOutcomeOfError,
  ilpOutcomeOfStatus,
} from './ilp-request-event.js';
export { DEFAULT_ILP_LIMITS, type IlpLimits, resolveIlpLimits } from './limits.js';
export {
  asBatch,
  CELL_BOOLEAN,
  CELL_DECIMAL,
  CELL_DOUBLE,
  CELL_DOUBLE_ARRAY,
  CELL_LONG,
  CELL_LONG_BIG,
  CELL_STRING,
  CELL_SYMBOL,
  CELL_TIMESTAMP,
  CELL_TIMESTAMP_BIG,
  CELL_TYPE_NAMES,
  IlpLineBatch,
  type IlpLines,
  lineCountOf,
  linesOf,
  TS_BIG,
  TS_NONE,
  TS_NUMBER,
} from './line-batch.js';
export {
  type CompleteIlpLines,
  PARSE_SLICE_BYTES,
  PARSE_SLICE_LINES,
  type ParseIlpInSlicesOptions,
  type ParseIlpOptions,
  parseCompleteIlpBatch,
  parseCompleteIlpLines,
  parseIlp,
  parseIlpBatch,
  parseIlpInSlices,
} from './line-parser.js';
export type { NameEntry } from './names.js';
export { type Precision, parsePrecision } from './precision.js';
export type { IlpTcpAuthKey } from './tcp-auth.js';
export { type IlpTcpServer, type IlpTcpServerOptions, startIlpTcpServer } from './tcp-server.js';
