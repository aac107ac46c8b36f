#!/usr/bin/env node
import { processIo } from './io.js';
import { main } from './main.js';

// walship pins an AWS SDK release that supports Node 20; its notice about later releases is not
// actionable for a walship user, so keep it off the terminal unless asked for.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
process.exitCode = await main(process.argv.slice(2), processIo);
