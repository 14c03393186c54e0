/*
** sqlite-deadline gives every SQLite connection of this build a time limit that a statement cannot run
** past (docs/ARCHITECTURE.md#query-time-limits). scripts/build-sqlite.mjs compiles it next to the
** amalgamation with SQLITE_EXTRA_INIT=edgelite_deadline_init, so sqlite3_initialize() registers an
** auto-extension and every connection opened after that gets, before any SQL runs on it:
**
**   - a progress handler, run every EDGELITE_DEADLINE_STEPS virtual-machine steps, that stops the
**     statement (SQLITE_INTERRUPT) once the connection's deadline has passed;
**   - edgelite_deadline(key, ms): ms > 0 arms the deadline ms milliseconds from now (a fraction is
**     kept), ms <= 0 or NULL disarms it. It returns 1 if the handler stopped a statement since the
**     previous call, else 0. The first call claims the connection for `key` (a text or blob of at least
**     16 bytes); a later call with another key fails, so SQL that does not know the key (a client's)
**     can neither disarm nor move the deadline;
**   - edgelite_deadline_key(): 1 once the connection is claimed, else 0 (and its presence proves the
**     build has this file).
**
** Both functions are SQLITE_DIRECTONLY (never from a trigger or view) and not deterministic. The
** state lives in the connection's client data, freed when the connection closes. Only the public API is
** used: this is its own translation unit, compiled into the same static library as sqlite3.c.
*/
#include <string.h>
#include "sqlite3.h"

#ifdef _WIN32
#include <windows.h>
static double edgelite_now_ms(void){
  static LARGE_INTEGER freq;
  LARGE_INTEGER now;
  if( freq.QuadPart==0 ) QueryPerformanceFrequency(&freq);
  QueryPerformanceCounter(&now);
  return (double)now.QuadPart * 1000.0 / (double)freq.QuadPart;
}
#else
#include <time.h>
static double edgelite_now_ms(void){
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}
#endif

/* EDGELITE_DEADLINE_STEPS: VM steps between two clock reads (a few microseconds of work each). */
#ifndef EDGELITE_DEADLINE_STEPS
# define EDGELITE_DEADLINE_STEPS 1000
#endif
#define EDGELITE_KEY_MIN 16
#define EDGELITE_KEY_MAX 64
#define EDGELITE_CLIENT_DATA "edgelite_deadline"

typedef struct EdgeliteDeadline {
  double deadline;   /* monotonic ms; 0 when disarmed */
  int fired;         /* the handler stopped a statement since the last edgelite_deadline() call */
  int keyLen;        /* 0 until claimed */
  unsigned char key[EDGELITE_KEY_MAX];
} EdgeliteDeadline;

static int edgelite_progress(void *p){
  EdgeliteDeadline *d = (EdgeliteDeadline*)p;
  if( d->deadline==0 || edgelite_now_ms()<d->deadline ) return 0;
  d->fired = 1;
  return 1;
}

static void edgelite_deadline_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv){
  EdgeliteDeadline *d = (EdgeliteDeadline*)sqlite3_user_data(ctx);
  const unsigned char *key;
  int n, fired;
  (void)argc;
  key = (const unsigned char*)sqlite3_value_blob(argv[0]);
  n = sqlite3_value_bytes(argv[0]);
  if( key==0 || n<EDGELITE_KEY_MIN || n>EDGELITE_KEY_MAX ){
    sqlite3_result_error(ctx, "edgelite_deadline: the key must be 16 to 64 bytes", -1);
    return;
  }
  if( d->keyLen==0 ){
    memcpy(d->key, key, n);
    d->keyLen = n;
  }else if( d->keyLen!=n || memcmp(d->key, key, n)!=0 ){
    sqlite3_result_error(ctx, "edgelite_deadline: not authorized", -1);
    return;
  }
  fired = d->fired;
  d->fired = 0;
  if( sqlite3_value_type(argv[1])==SQLITE_NULL || sqlite3_value_double(argv[1])<=0 ){
    d->deadline = 0;
  }else{
    d->deadline = edgelite_now_ms() + sqlite3_value_double(argv[1]);
  }
  sqlite3_result_int(ctx, fired);
}

static void edgelite_deadline_key_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv){
  EdgeliteDeadline *d = (EdgeliteDeadline*)sqlite3_user_data(ctx);
  (void)argc; (void)argv;
  sqlite3_result_int(ctx, d->keyLen>0);
}

static int edgelite_deadline_connection(sqlite3 *db, const char **pzErr, const void *pApi){
  EdgeliteDeadline *d;
  int rc;
  int flags = SQLITE_UTF8 | SQLITE_DIRECTONLY;
  (void)pzErr; (void)pApi;
  d = (EdgeliteDeadline*)sqlite3_malloc(sizeof(*d));
  if( d==0 ) return SQLITE_NOMEM;
  memset(d, 0, sizeof(*d));
  /* The client data owns d from here on (freed at close, even if a step below fails). */
  rc = sqlite3_set_clientdata(db, EDGELITE_CLIENT_DATA, d, sqlite3_free);
  if( rc!=SQLITE_OK ){
    sqlite3_free(d);
    return rc;
  }
  rc = sqlite3_create_function_v2(db, "edgelite_deadline", 2, flags, d, edgelite_deadline_fn, 0, 0, 0);
  if( rc==SQLITE_OK ){
    rc = sqlite3_create_function_v2(db, "edgelite_deadline_key", 0, flags, d, edgelite_deadline_key_fn, 0, 0, 0);
  }
  if( rc==SQLITE_OK ) sqlite3_progress_handler(db, EDGELITE_DEADLINE_STEPS, edgelite_progress, d);
  return rc;
}

/* edgelite_deadline_init is SQLITE_EXTRA_INIT: run once, at the end of sqlite3_initialize(). */
int edgelite_deadline_init(const char *unused){
  (void)unused;
  return sqlite3_auto_extension((void(*)(void))edgelite_deadline_connection);
}
