import { tokensSuite } from './tokens-suite.ts';

tokensSuite('postgres');
