// CPlexusISCSI: libiscsi for the iSCSI SAN backend of the storage target. libiscsi's own API is
// imported as is; what is here is the task completion callback (a C function that records a
// task's outcome in its slot, so no Swift closure crosses into C) and thin wrappers that start a
// READ(16), WRITE(16) or SYNCHRONIZE CACHE(16) with its data in the caller's memory.
#ifndef CPLEXUS_ISCSI_H
#define CPLEXUS_ISCSI_H

#include <stdint.h>
#include <poll.h>
#include <stddef.h>
#include <sys/uio.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

static const int plx_POLLIN = POLLIN;
static const int plx_POLLOUT = POLLOUT;

/// Outcomes a slot's task can end with, besides a SCSI status (0 … 0xff).
static const int32_t plx_ISCSI_PENDING = -1;
/// The connection failed (SCSI_STATUS_ERROR), the task was cancelled, or it timed out.
static const int32_t plx_ISCSI_CONNECTION = -2;
static const int32_t plx_ISCSI_CANCELLED = -3;

/// The completions of one session: slot numbers appended by the callback, drained by the owner.
typedef struct plx_iscsi_done_list {
    uint32_t *entries;
    uint32_t count;
    uint32_t capacity;
} plx_iscsi_done_list;

/// One command slot of a session: the task in flight, its data vector, and its outcome.
typedef struct plx_iscsi_slot {
    struct scsi_task *task;
    struct scsi_iovec iov;
    /// plx_ISCSI_PENDING while in flight; then the SCSI status or a plx_ISCSI_ outcome.
    int32_t status;
    uint8_t sense_key;
    uint8_t asc;
    uint8_t ascq;
    uint32_t residual;
    uint32_t index;
    plx_iscsi_done_list *done;
} plx_iscsi_slot;

/// The callback of every task: records status, sense and residual in the slot, frees the task,
/// appends the slot to its done list.
void plx_iscsi_task_done(struct iscsi_context *iscsi, int status, void *command_data, void *private_data);

/// Starts READ(16) of `length` bytes at `lba` into `memory`; 0, or -1 (iscsi_get_error says why).
int plx_iscsi_read16(struct iscsi_context *iscsi, int lun, uint64_t lba, uint32_t length, int block_size,
                     plx_iscsi_slot *slot, void *memory);
/// Starts WRITE(16) of `length` bytes at `lba` from `memory` (with FUA when `fua`).
int plx_iscsi_write16(struct iscsi_context *iscsi, int lun, uint64_t lba, uint32_t length, int block_size,
                      int fua, plx_iscsi_slot *slot, void *memory);
/// Starts SYNCHRONIZE CACHE(16) of the whole LUN.
int plx_iscsi_sync16(struct iscsi_context *iscsi, int lun, plx_iscsi_slot *slot);
/// Cancels the slot's task if it is in flight (its callback runs at once, CANCELLED).
void plx_iscsi_cancel(struct iscsi_context *iscsi, plx_iscsi_slot *slot);

/// READ CAPACITY(16), synchronously (setup only): 0 and the geometry, or -1.
int plx_iscsi_read_capacity16(struct iscsi_context *iscsi, int lun, uint64_t *blocks, uint32_t *block_size);

/// REPORT LUNS (select report 0), synchronously (discovery only): the number of LUNs, at most
/// `capacity` of them stored in `luns`, or -1.
int plx_iscsi_report_luns(struct iscsi_context *iscsi, uint16_t *luns, int capacity);

/// Starts a login to `portal` (a reconnection, on a new context) without blocking; the outcome
/// (0, or -1) is stored in `*status` (plx_ISCSI_PENDING until then) by iscsi_service.
int plx_iscsi_connect_async(struct iscsi_context *iscsi, const char *portal, int lun, int32_t *status);

#endif
