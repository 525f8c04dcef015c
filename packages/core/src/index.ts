export * from './api.ts';
export * from './errors.ts';
export * from './formats.ts';
export * from './names.ts';
export * from './paths.ts';
export * from './permissions.ts';
