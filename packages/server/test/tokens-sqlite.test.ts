import { tokensSuite } from './tokens-suite.ts';

tokensSuite('sqlite');
