import { conversionsSuite } from './conversions-suite.ts';

conversionsSuite('sqlite');
