/** The API's image paths, as the server, its background work and its clients build them. */
const seg = encodeURIComponent;

/** The path of an image's metadata: `/api/images/{owner}/{name}`. */
export const imagePath = (owner: string, name: string) => `/api/images/${seg(owner)}/${seg(name)}`;
/** The path of an image's bytes: `/api/images/raw/{owner}/{name}`. */
export const rawPath = (owner: string, name: string) => `/api/images/raw/${seg(owner)}/${seg(name)}`;
