import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, ERROR_KINDS, type ErrorCodeSpec, HTTP_ANSWER_CODES } from '../core/index.js';
import {
  type ClientCodeDoc,
  ERRORS_REGENERATE,
  renderErrorReference,
  renderTroubleshooting,
} from './error-reference.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PAGE = new URL('../docs/errors.md', import.meta.url);
const README = new URL('../README.md', import.meta.url);
const TROUBLESHOOTING_BLOCK =
  /(<!-- troubleshooting: generated[^\n]*-->\n)([\s\S]*?)(<!-- troubleshooting end -->)/;

/** Top-level folders that are no product source; client/ has its own codes (client/errors.ts). */
const SKIPPED_DIRS = new Set(['node_modules', 'dist', 'tests', 'bench', 'client', 'docs']);

/**
 * The store audit (`walship verify`, RFC 0007: *-audit.ts) writes findings with codes of their own,
 * another vocabulary than errors: its `code` fields are not error answers.
 */
const AUDIT_FILE = /-audit\.ts$/;

/** Codes of Node.js, the OS, SQLite and undici, compared against `error.code`: not ours. */
const FOREIGN_CODE = /^(E[A-Z0-9]+|ERR_[A-Z0-9_]+|SQLITE_[A-Z_]+|UND_ERR_[A-Z_]+)$/;

/** The client's codes with their doc comments, read from the `ClientErrorCode` union's source. */
function clientCodes(): ClientCodeDoc[] {
  const file = join(ROOT, 'client', 'errors.ts');
  const text = readFileSync(file, 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const alias = source.statements.find(
    (s): s is ts.TypeAliasDeclaration => ts.isTypeAliasDeclaration(s) && s.name.text === 'ClientErrorCode',
  );
  if (alias === undefined || !ts.isUnionTypeNode(alias.type)) throw new Error('no ClientErrorCode union');
  const union = alias.type.types;
  return union.map((member, i) => {
    if (!ts.isLiteralTypeNode(member) || !ts.isStringLiteral(member.literal))
      throw new Error(`ClientErrorCode member ${member.getText(source)} is not a string literal`);
    // The doc comment before the member (and its `|`): the last one since the member before.
    const before = text.slice(i === 0 ? alias.type.pos : union[i - 1]!.end, member.getStart(source));
    const doc = [...before.matchAll(/\/\*\*([\s\S]*?)\*\//g)].at(-1)?.[1] ?? '';
    return { code: member.literal.text, meaning: doc.replace(/\n\s*\*/g, ' ').trim() };
  });
}

// --- The source scan --------------------------------------------------------------------------

type UseContext = 'throw' | 'match' | 'answer' | 'argument';

interface CodeUse {
  code: string;
  where: string;
  context: UseContext;
  /** The kind literal a throw site passes, when it is one. */
  kind?: string;
}

function productFiles(dir = ROOT): string[] {
  const files: string[] = [];
  for (const name of readdirSync(dir)) {
    if (name.startsWith('.') || name === 'node_modules') continue;
    if (dir === ROOT && SKIPPED_DIRS.has(name)) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) files.push(...productFiles(path));
    else if (name.endsWith('.ts') && !name.endsWith('.test.ts') && !name.endsWith('.d.ts')) files.push(path);
  }
  return files;
}

/** The string literals an expression evaluates to: itself, or the branches of `?:`, `??` and `||`. */
function literalsOf(node: ts.Expression): string[] {
  if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) return [node.text];
  if (ts.isParenthesizedExpression(node) || ts.isAsExpression(node) || ts.isSatisfiesExpression(node))
    return literalsOf(node.expression);
  if (ts.isConditionalExpression(node)) return [...literalsOf(node.whenTrue), ...literalsOf(node.whenFalse)];
  if (
    ts.isBinaryExpression(node) &&
    (node.operatorToken.kind === ts.SyntaxKind.QuestionQuestionToken ||
      node.operatorToken.kind === ts.SyntaxKind.BarBarToken)
  )
    return [...literalsOf(node.left), ...literalsOf(node.right)];
  return [];
}

const isCodeName = (node: ts.Expression) =>
  (ts.isIdentifier(node) && node.text === 'code') ||
  (ts.isPropertyAccessExpression(node) && node.name.text === 'code');

const SCREAMING = /^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$|^[A-Z]{4,}$/;

/**
 * Every error code written as a literal in the product source, with how it is used:
 * - throw: the code of `new WalshipError(…)` or of a subclass's `super(code, kind, …)`;
 * - match: `isWalshipError(error, code)`, `error.code === code`;
 * - answer: `code` of an object literal (JSON answers, status facts), of an ILP answer
 *   `errors.send(res, status, code, …)`, or a code-like literal of a `const code = …`;
 * - argument: a code-like literal passed to any other call (helpers such as `fail(code, …)`),
 *   only counted as a use: not every such literal is an error code.
 */
function scanCodes(): CodeUse[] {
  const uses: CodeUse[] = [];
  for (const file of productFiles()) {
    const audit = AUDIT_FILE.test(file);
    const text = readFileSync(file, 'utf8');
    const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
    const at = (node: ts.Node) =>
      `${relative(ROOT, file)}:${source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1}`;
    const add = (node: ts.Expression, context: UseContext, kind?: ts.Expression) => {
      const kindText = kind !== undefined && ts.isStringLiteral(kind) ? kind.text : undefined;
      for (const code of literalsOf(node))
        uses.push({ code, where: at(node), context, ...(kindText === undefined ? {} : { kind: kindText }) });
    };
    const visit = (node: ts.Node): void => {
      if (
        ts.isNewExpression(node) &&
        node.expression.getText(source) === 'WalshipError' &&
        node.arguments?.[0]
      )
        add(node.arguments[0], 'throw', node.arguments[1]);
      else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.SuperKeyword) {
        const [code, kind] = node.arguments;
        if (
          code !== undefined &&
          kind !== undefined &&
          ts.isStringLiteral(kind) &&
          Object.hasOwn(ERROR_KINDS, kind.text)
        )
          add(code, 'throw', kind);
      } else if (ts.isCallExpression(node)) {
        const callee = node.expression.getText(source);
        const [first, second, third] = node.arguments;
        if (callee === 'isWalshipError' && second !== undefined) add(second, 'match');
        else if (/(^|\.)send$/.test(callee) && first?.getText(source) === 'res' && third !== undefined)
          add(third, 'answer');
        else
          for (const argument of node.arguments)
            for (const code of literalsOf(argument))
              if (SCREAMING.test(code)) uses.push({ code, where: at(argument), context: 'argument' });
      } else if (
        ts.isBinaryExpression(node) &&
        (node.operatorToken.kind === ts.SyntaxKind.EqualsEqualsEqualsToken ||
          node.operatorToken.kind === ts.SyntaxKind.ExclamationEqualsEqualsToken) &&
        isCodeName(node.left)
      ) {
        for (const code of literalsOf(node.right))
          if (!FOREIGN_CODE.test(code)) uses.push({ code, where: at(node.right), context: 'match' });
      } else if (ts.isObjectLiteralExpression(node) && !audit) {
        for (const property of node.properties)
          if (ts.isPropertyAssignment(property) && property.name.getText(source) === 'code')
            add(property.initializer, 'answer');
      } else if (
        ts.isVariableDeclaration(node) &&
        node.name.getText(source) === 'code' &&
        node.initializer !== undefined &&
        !audit
      ) {
        for (const code of literalsOf(node.initializer))
          if (SCREAMING.test(code) && !FOREIGN_CODE.test(code))
            uses.push({ code, where: at(node.initializer), context: 'answer' });
      }
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  return uses;
}

describe('the error registry (core/error-codes.ts)', () => {
  const uses = scanCodes();
  const errorCodes: Record<string, ErrorCodeSpec> = ERROR_CODES;

  it('docs/errors.md is what the registry generates', () => {
    const page = readFileSync(PAGE, 'utf8');
    const expected = renderErrorReference(clientCodes());
    if (process.env.WALSHIP_UPDATE_DOCS === '1' && expected !== page) writeFileSync(PAGE, expected);
    else expect(page, `run ${ERRORS_REGENERATE}`).toBe(expected);
  });

  it("the README's troubleshooting table is what the registry generates", () => {
    const readme = readFileSync(README, 'utf8');
    const block = TROUBLESHOOTING_BLOCK.exec(readme);
    expect(block, 'README.md has the troubleshooting markers').not.toBeNull();
    const expected = `${renderTroubleshooting()}\n`;
    if (process.env.WALSHIP_UPDATE_DOCS === '1' && block![2] !== expected)
      writeFileSync(README, readme.replace(TROUBLESHOOTING_BLOCK, `$1${expected}$3`));
    else expect(block![2], `run ${ERRORS_REGENERATE}`).toBe(expected);
  });

  it('lists every code of the client library, with its doc', () => {
    const codes = clientCodes();
    expect(codes.map((c) => c.code)).toContain('WRITE_REJECTED');
    for (const { code, meaning } of codes) expect(meaning, code).not.toBe('');
  });

  it('registers every code the source throws, matches or answers with', () => {
    expect(uses.filter((u) => u.context === 'throw').length).toBeGreaterThan(150);
    const unregistered = uses
      .filter((u) => u.context !== 'argument')
      .filter((u) => !Object.hasOwn(ERROR_CODES, u.code) && !Object.hasOwn(HTTP_ANSWER_CODES, u.code))
      .map((u) => `${u.code} (${u.context}) at ${u.where}`);
    expect(unregistered).toEqual([]);
    const thrownAsAnswers = uses
      .filter(
        (u) => (u.context === 'throw' || u.context === 'match') && Object.hasOwn(HTTP_ANSWER_CODES, u.code),
      )
      .map((u) => `${u.code} at ${u.where}`);
    expect(thrownAsAnswers).toEqual([]);
  });

  it('documents the kind every throw site passes', () => {
    const wrong = uses
      .filter((u) => u.context === 'throw' && u.kind !== undefined && Object.hasOwn(ERROR_CODES, u.code))
      .filter((u) => !(errorCodes[u.code]!.kinds as readonly string[]).includes(u.kind!))
      .map((u) => `${u.code} thrown as ${u.kind} at ${u.where}, registered as ${errorCodes[u.code]!.kinds}`);
    expect(wrong).toEqual([]);
  });

  it('has no dead entries: every registered code is used in the source', () => {
    const used = new Set(uses.filter((u) => u.context !== 'match').map((u) => u.code));
    const dead = [...Object.keys(ERROR_CODES), ...Object.keys(HTTP_ANSWER_CODES)].filter((c) => !used.has(c));
    expect(dead).toEqual([]);
  });

  it('gives every code a meaning and an action, as sentences', () => {
    for (const [code, spec] of Object.entries({ ...ERROR_CODES, ...HTTP_ANSWER_CODES })) {
      expect(spec.meaning, code).toMatch(/^[A-Z`a-z/].*[.)]$/);
      expect(spec.action, code).toMatch(/^[A-Z`a-z].*[.)]$/);
    }
  });
});
