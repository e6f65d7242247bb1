/* scripts.h - the node-side shell scripts, src/sh/NAME.sh, embedded at build
 * time by src/sh/embed.sh (private to rollout.c and keyclean.c).  Each is the script's
 * text without its comment-only lines, NUL-terminated. */
#ifndef CERTFLEET_SCRIPTS_H
#define CERTFLEET_SCRIPTS_H

extern const char cf_sh_preflight[]; /* dry run: what would fail */
extern const char cf_sh_stage[];     /* write, back up, swap, check, reload */
extern const char cf_sh_rollback[];  /* restore backed-up files, reload */
extern const char cf_sh_audit[];     /* unchanged node: fix mode/owner */
extern const char cf_sh_dirsafe[];   /* dirsafe(): put in front of stage and
					preflight */
extern const char cf_sh_keyclean[];  /* remove a compromised key's backups */

#endif
