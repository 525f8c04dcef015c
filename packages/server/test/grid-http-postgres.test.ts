import { gridHttpSuite } from './grid-http-suite.ts';

gridHttpSuite('postgres');
