/**
 * The demo's two tables, shaped like what people store in a time-series database: `trades`
 * (crypto trades whose prices walk at random) and `sensors` (devices reporting a temperature on a
 * compressed day-night cycle, humidity, and a draining battery). The writer adds each row's `id`
 * and timestamp (cluster-writer.ts); these add the rest.
 */
import type { Random } from '../core/index.js';
import type { RowColumns } from './cluster-writer.js';

/** Symbol, starting price, and the decimals its price is shown with. */
const TRADE_SYMBOLS = [
  ['BTC-USD', 64_000, 2],
  ['ETH-USD', 3_400, 2],
  ['SOL-USD', 150, 3],
  ['XRP-USD', 0.6, 5],
  ['ADA-USD', 0.45, 5],
] as const;
/** Per-trade volatility of the log price (a random walk). */
const PRICE_STEP_SIGMA = 0.0006;

const DEVICES = 12;
/** One "day" of the temperature cycle, compressed so a one-minute demo shows most of it. */
const DAY_MS = 120_000;
const BATTERY_DRAIN_PER_READING = 0.01;
const BATTERY_FLOOR = 5;

/** A standard normal sample (Box–Muller). */
function gaussian(random: Random): number {
  const u = Math.max(random.next(), Number.EPSILON);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random.next());
}

function round(value: number, decimals: number): number {
  const scale = 10 ** decimals;
  return Math.round(value * scale) / scale;
}

function pick<T>(random: Random, items: readonly T[]): T {
  return items[Math.floor(random.next() * items.length)]!;
}

/** `trades`: symbol, side (symbols), price (a random walk per symbol), amount (≈ $10 to $10 000 notional). */
export function tradeColumns(random: Random): RowColumns {
  const prices: number[] = TRADE_SYMBOLS.map(([, start]) => start);
  return (row) => {
    const index = Math.floor(random.next() * TRADE_SYMBOLS.length);
    const [symbol, , decimals] = TRADE_SYMBOLS[index]!;
    const price = prices[index]! * Math.exp(PRICE_STEP_SIGMA * gaussian(random));
    prices[index] = price;
    const notional = 10 * 1000 ** random.next();
    row
      .symbol('symbol', symbol)
      .symbol('side', pick(random, ['buy', 'sell']))
      .floatColumn('price', round(price, decimals))
      .floatColumn('amount', round(notional / price, 6));
  };
}

/**
 * `sensors`: device (a symbol), temperature (°C, a sine over DAY_MS with a phase per device, plus
 * noise), humidity (%, falling as it warms), battery (%, draining a little with every reading).
 */
export function sensorColumns(random: Random, nowMs: () => number): RowColumns {
  const phases = Array.from({ length: DEVICES }, () => random.next() * 2 * Math.PI);
  const batteries = Array.from({ length: DEVICES }, (_, i) => 100 - 3 * i);
  return (row) => {
    const device = Math.floor(random.next() * DEVICES);
    const angle = (2 * Math.PI * nowMs()) / DAY_MS + phases[device]!;
    const temperature = 18 + 6 * Math.sin(angle) + 0.3 * gaussian(random);
    const humidity = Math.min(100, Math.max(0, 60 - 2 * (temperature - 18) + 1.5 * gaussian(random)));
    const battery = Math.max(BATTERY_FLOOR, batteries[device]! - BATTERY_DRAIN_PER_READING);
    batteries[device] = battery;
    row
      .symbol('device', `sensor-${String(device + 1).padStart(2, '0')}`)
      .floatColumn('temperature', round(temperature, 2))
      .floatColumn('humidity', round(humidity, 1))
      .floatColumn('battery', round(battery, 2));
  };
}
