/**
 * PostgreSQL's frontend/backend protocol v3 framing (https://www.postgresql.org/docs/current/protocol-message-formats.html):
 * reading what a client sends, bounded in size, and writing what a server answers.
 *
 * Why not a library: `pg-protocol` (node-postgres's codec) parses the backend's messages and writes
 * the frontend's, the client side; a server needs the other two halves. `pg-gateway` 0.2.4 does the
 * startup and authentication but leaves the extended protocol to a raw hook, buffers a message of
 * any announced length (a client claiming 2 GiB grows the buffer until it has sent it), prints
 * simple queries to stdout and has no CancelRequest. The framing itself is a type byte and a
 * length; this file is that, with the bound and typed errors the node needs. The tests drive it
 * with real clients (psql, node-postgres, postgres.js) and with pg-protocol's own serializer.
 */

/** A malformed or oversized message: the connection is answered with an error and closed. */
export class PgProtocolError extends Error {
  constructor(
    message: string,
    /** SQLSTATE: 08P01 protocol_violation, 54000 program_limit_exceeded. */
    readonly sqlState: string = '08P01',
  ) {
    super(message);
    this.name = 'PgProtocolError';
  }
}

/** The startup-phase request codes that stand in a startup message's protocol version. */
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;
export const PROTOCOL_V3 = 196608;

/** One frontend message: its type byte (0 for a startup-phase message) and its payload. */
export interface FrontendMessage {
  type: number;
  payload: Buffer;
}

/**
 * Splits a client's byte stream into messages. Until the startup message a message has no type
 * byte; after it, every message has one. A length below the header or above `maxMessageBytes`
 * throws PgProtocolError before any of the message is buffered.
 */
export class FrontendReader {
  #chunks: Buffer[] = [];
  #buffered = 0;
  #started = false;

  constructor(private readonly maxMessageBytes: number) {}

  get buffered(): number {
    return this.#buffered;
  }

  /** Adds `chunk` and returns the messages it completed. */
  push(chunk: Buffer): FrontendMessage[] {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    const messages: FrontendMessage[] = [];
    for (;;) {
      const message = this.#next();
      if (message === undefined) return messages;
      messages.push(message);
    }
  }

  #next(): FrontendMessage | undefined {
    const header = this.#started ? 5 : 4;
    if (this.#buffered < header) return undefined;
    const head = this.#peek(header);
    const type = this.#started ? head[0]! : 0;
    const length = head.readInt32BE(this.#started ? 1 : 0);
    if (length < 4) throw new PgProtocolError(`invalid message length ${length}`);
    if (length > this.maxMessageBytes) {
      throw new PgProtocolError(
        `message of ${length} bytes exceeds the limit of ${this.maxMessageBytes} (pg.recv.buffer.size)`,
        '54000',
      );
    }
    const total = length + (this.#started ? 1 : 0);
    if (this.#buffered < total) return undefined;
    const whole = this.#take(total);
    if (this.#started) return { type, payload: whole.subarray(5) };
    // The startup message ends the untyped phase; SSLRequest, GSSENCRequest and CancelRequest do not.
    const payload = whole.subarray(4);
    const code = payload.length >= 4 ? payload.readInt32BE(0) : 0;
    if (code !== SSL_REQUEST_CODE && code !== GSSENC_REQUEST_CODE && code !== CANCEL_REQUEST_CODE)
      this.#started = true;
    return { type: 0, payload };
  }

  #peek(bytes: number): Buffer {
    if (this.#chunks[0]!.length >= bytes) return this.#chunks[0]!;
    this.#chunks = [Buffer.concat(this.#chunks)];
    return this.#chunks[0]!;
  }

  #take(bytes: number): Buffer {
    const first = this.#peek(bytes);
    const taken = first.subarray(0, bytes);
    if (first.length === bytes) this.#chunks.shift();
    else this.#chunks[0] = first.subarray(bytes);
    this.#buffered -= bytes;
    return taken;
  }
}

/** Reads the fields of one message's payload; running past its end throws PgProtocolError. */
export class PayloadReader {
  #offset = 0;

  constructor(private readonly payload: Buffer) {}

  get remaining(): number {
    return this.payload.length - this.#offset;
  }

  int16(): number {
    this.#need(2);
    const value = this.payload.readInt16BE(this.#offset);
    this.#offset += 2;
    return value;
  }

  int32(): number {
    this.#need(4);
    const value = this.payload.readInt32BE(this.#offset);
    this.#offset += 4;
    return value;
  }

  /** A NUL-terminated UTF-8 string. */
  cstring(): string {
    const end = this.payload.indexOf(0, this.#offset);
    if (end < 0) throw new PgProtocolError('a string field has no terminating NUL');
    const value = this.payload.toString('utf8', this.#offset, end);
    this.#offset = end + 1;
    return value;
  }

  bytes(length: number): Buffer {
    this.#need(length);
    const value = this.payload.subarray(this.#offset, this.#offset + length);
    this.#offset += length;
    return value;
  }

  byte(): number {
    this.#need(1);
    return this.payload[this.#offset++]!;
  }

  #need(bytes: number): void {
    if (bytes < 0 || this.#offset + bytes > this.payload.length) {
      throw new PgProtocolError('a message is shorter than its fields');
    }
  }
}

/** Builds backend messages: fields appended, then `message(type)` frames them. */
export class BackendWriter {
  #parts: Buffer[] = [];
  #length = 0;

  int16(value: number): this {
    const b = Buffer.allocUnsafe(2);
    b.writeInt16BE(value);
    return this.raw(b);
  }

  int32(value: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeInt32BE(value);
    return this.raw(b);
  }

  cstring(value: string): this {
    return this.raw(Buffer.from(`${value}\0`, 'utf8'));
  }

  raw(bytes: Buffer): this {
    this.#parts.push(bytes);
    this.#length += bytes.length;
    return this;
  }

  /** The fields so far as one message of `type` (a character); the writer is empty again. */
  message(type: string): Buffer {
    const head = Buffer.allocUnsafe(5);
    head[0] = type.charCodeAt(0);
    head.writeInt32BE(this.#length + 4, 1);
    const out = Buffer.concat([head, ...this.#parts], this.#length + 5);
    this.#parts = [];
    this.#length = 0;
    return out;
  }
}

/** The fields of an ErrorResponse or NoticeResponse. */
export interface PgErrorFields {
  severity: 'ERROR' | 'FATAL' | 'NOTICE' | 'WARNING';
  /** SQLSTATE, five characters. */
  sqlState: string;
  message: string;
  detail?: string;
  hint?: string;
  /** 1-based character position in the query. */
  position?: number;
}

export function errorResponse(fields: PgErrorFields, type: 'E' | 'N' = 'E'): Buffer {
  const w = new BackendWriter();
  const field = (code: string, value: string) => w.raw(Buffer.from(code)).cstring(value);
  field('S', fields.severity);
  field('V', fields.severity);
  field('C', fields.sqlState);
  field('M', fields.message);
  if (fields.detail !== undefined) field('D', fields.detail);
  if (fields.hint !== undefined) field('H', fields.hint);
  if (fields.position !== undefined && fields.position > 0) field('P', String(fields.position));
  w.raw(Buffer.from([0]));
  return w.message(type);
}

export function readyForQuery(status: 'I' | 'T' | 'E'): Buffer {
  return new BackendWriter().raw(Buffer.from(status)).message('Z');
}

export function parameterStatus(name: string, value: string): Buffer {
  return new BackendWriter().cstring(name).cstring(value).message('S');
}

export function commandComplete(tag: string): Buffer {
  return new BackendWriter().cstring(tag).message('C');
}

/** A message of `type` with no fields (ParseComplete '1', BindComplete '2', NoData 'n', …). */
export function emptyMessage(type: string): Buffer {
  return new BackendWriter().message(type);
}

export function authenticationRequest(code: number, extra?: Buffer): Buffer {
  const w = new BackendWriter().int32(code);
  if (extra !== undefined) w.raw(extra);
  return w.message('R');
}

export function backendKeyData(processId: number, secret: number): Buffer {
  return new BackendWriter().int32(processId).int32(secret).message('K');
}

/** RowDescription: name, no table, the type, its size, modifier -1, and the format per column. */
export function rowDescription(
  columns: readonly { name: string; oid: number }[],
  formats: readonly number[],
): Buffer {
  const w = new BackendWriter().int16(columns.length);
  columns.forEach(({ name, oid }, i) => {
    w.cstring(name)
      .int32(0)
      .int16(0)
      .int32(oid)
      .int16(typeSize(oid))
      .int32(-1)
      .int16(formats[i] ?? 0);
  });
  return w.message('T');
}

export function parameterDescription(oids: readonly number[]): Buffer {
  const w = new BackendWriter().int16(oids.length);
  for (const oid of oids) w.int32(oid);
  return w.message('t');
}

function typeSize(oid: number): number {
  switch (oid) {
    case 16:
      return 1;
    case 20:
    case 701:
    case 1114:
      return 8;
    default:
      return -1;
  }
}
