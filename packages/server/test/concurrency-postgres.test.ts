import { concurrencySuite } from './concurrency-suite.ts';

concurrencySuite('postgres');
