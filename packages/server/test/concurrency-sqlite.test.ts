import { concurrencySuite } from './concurrency-suite.ts';

concurrencySuite('sqlite');
