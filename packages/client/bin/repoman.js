#!/usr/bin/env node
// The installed command: the compiled client (npm run build, or npm pack, makes dist/).
import '../dist/main.js';
