import { imageListsSuite } from './image-lists-suite.ts';

imageListsSuite('sqlite');
