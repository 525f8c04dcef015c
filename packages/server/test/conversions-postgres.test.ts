import { conversionsSuite } from './conversions-suite.ts';

conversionsSuite('postgres');
