import { describe, expect, it } from 'vitest';
import { ScramExchange, scramSecret } from './scram.js';
import { PgProtocolError } from './wire.js';

// RFC 7677 §3: user "user", password "pencil".
const SALT = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64');
const CLIENT_FIRST = 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO';
const SERVER_NONCE = '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0';
const CLIENT_FINAL =
  'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=';

describe('SCRAM-SHA-256', () => {
  it("answers RFC 7677's exchange with its server signature", () => {
    const exchange = new ScramExchange(scramSecret('pencil', SALT, 4096), SERVER_NONCE);
    expect(exchange.first(CLIENT_FIRST)).toBe(
      'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
    );
    expect(exchange.final(CLIENT_FINAL)).toBe('v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=');
  });

  it('refuses a wrong password, a changed nonce and malformed messages', () => {
    const wrong = new ScramExchange(scramSecret('pencils', SALT, 4096), SERVER_NONCE);
    wrong.first(CLIENT_FIRST);
    expect(wrong.final(CLIENT_FINAL)).toBeUndefined();
    const exchange = new ScramExchange(scramSecret('pencil', SALT, 4096), SERVER_NONCE);
    exchange.first(CLIENT_FIRST);
    expect(() => exchange.final(CLIENT_FINAL.replace('k0,p=', 'k1,p='))).toThrow(/nonce/);
    expect(() => new ScramExchange(scramSecret('x')).first('p=tls-server-end-point,,n=,r=abc')).toThrow(
      /channel binding/,
    );
    expect(() => new ScramExchange(scramSecret('x')).first('garbage')).toThrow(PgProtocolError);
  });
});
