/**
 * How long who a certificate's DN is (the user, their groups and permissions) is remembered. The rule, for
 * workers and servers alike: a change to users and groups applies to the very next request on every worker
 * process of the server that made it, and within this time on other servers sharing the database. The
 * services that change users and groups forget it all (`forget`) once their change is committed, and have the
 * server's other workers forget it too before they answer (services/index.ts, cluster.ts).
 *
 * A module of its own so that the primary process (cluster.ts) knows it without loading the services.
 */
export const ACTOR_CACHE_MS = 2000;
