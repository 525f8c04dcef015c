import { bytesSuite } from './bytes-suite.ts';

bytesSuite('postgres');
