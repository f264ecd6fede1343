/// <reference types="vitest/config" />
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// `npm run dev` serves the app on http://localhost:5173 and forwards the gateway's own paths to
// a running gateway (GATEWAY_URL, default http://127.0.0.1:8080), so the app sees one origin,
// as it does when the gateway serves the built app from `static_dir`.
const gateway = process.env.GATEWAY_URL ?? 'http://127.0.0.1:8080';
const gatewayPaths = ['/events', '/broadcast', '/tickets', '/stats', '/clients', '/healthz', '/readyz', '/metrics'];

export default defineConfig({
  plugins: [react()],
  server: {
    proxy: Object.fromEntries(gatewayPaths.map((p) => [p, { target: gateway }])),
  },
  build: {
    outDir: 'dist',
    sourcemap: true,
  },
  test: {
    environment: 'jsdom',
    setupFiles: ['./src/test/setup.ts'],
    globals: true,
    include: ['src/**/*.test.{ts,tsx}'],
    restoreMocks: true,
  },
});
