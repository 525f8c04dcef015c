import { defineConfig } from 'vite';

// Preact's JSX, compiled by Vite's own transformer: no plugin needed.
export default defineConfig({
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    target: 'es2022',
    // Assets are served by the Repoman server with their hashed names, never inlined (the CSP allows only 'self').
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    reportCompressedSize: true,
  },
});
