// Types for what Vite adds to the module graph (CSS imported for its side effect).
declare module '*.css';
