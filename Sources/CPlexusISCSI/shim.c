#include "CPlexusISCSI.h"

void plx_iscsi_task_done(struct iscsi_context *iscsi, int status, void *command_data, void *private_data) {
    (void)iscsi;
    plx_iscsi_slot *slot = private_data;
    struct scsi_task *task = command_data;
    slot->sense_key = 0;
    slot->asc = 0;
    slot->ascq = 0;
    slot->residual = 0;
    if (status == SCSI_STATUS_CANCELLED) {
        slot->status = plx_ISCSI_CANCELLED;
    } else if (status == SCSI_STATUS_ERROR || status == SCSI_STATUS_TIMEOUT || status < 0 || status > 0xff) {
        slot->status = plx_ISCSI_CONNECTION;
    } else {
        slot->status = status;
        if (task != NULL) {
            slot->sense_key = (uint8_t)task->sense.key;
            slot->asc = (uint8_t)(task->sense.ascq >> 8);
            slot->ascq = (uint8_t)(task->sense.ascq & 0xff);
            slot->residual = task->residual_status == SCSI_RESIDUAL_NO_RESIDUAL ? 0 : task->residual;
        }
    }
    if (task != NULL) scsi_free_scsi_task(task);
    slot->task = NULL;
    if (slot->done->count < slot->done->capacity) slot->done->entries[slot->done->count++] = slot->index;
}

static int started(plx_iscsi_slot *slot, struct scsi_task *task) {
    if (task == NULL) return -1;
    slot->task = task;
    return 0;
}

int plx_iscsi_read16(struct iscsi_context *iscsi, int lun, uint64_t lba, uint32_t length, int block_size,
                     plx_iscsi_slot *slot, void *memory) {
    slot->status = plx_ISCSI_PENDING;
    slot->iov.iov_base = memory;
    slot->iov.iov_len = length;
    return started(slot, iscsi_read16_iov_task(iscsi, lun, lba, length, block_size, 0, 0, 0, 0, 0,
                                               plx_iscsi_task_done, slot, &slot->iov, 1));
}

int plx_iscsi_write16(struct iscsi_context *iscsi, int lun, uint64_t lba, uint32_t length, int block_size,
                      int fua, plx_iscsi_slot *slot, void *memory) {
    slot->status = plx_ISCSI_PENDING;
    slot->iov.iov_base = memory;
    slot->iov.iov_len = length;
    return started(slot, iscsi_write16_iov_task(iscsi, lun, lba, NULL, length, block_size, 0, 0, fua ? 1 : 0, 0, 0,
                                                plx_iscsi_task_done, slot, &slot->iov, 1));
}

int plx_iscsi_sync16(struct iscsi_context *iscsi, int lun, plx_iscsi_slot *slot) {
    slot->status = plx_ISCSI_PENDING;
    return started(slot, iscsi_synchronizecache16_task(iscsi, lun, 0, 0, 0, 0, plx_iscsi_task_done, slot));
}

void plx_iscsi_cancel(struct iscsi_context *iscsi, plx_iscsi_slot *slot) {
    if (slot->task != NULL) iscsi_scsi_cancel_task(iscsi, slot->task);
}

int plx_iscsi_read_capacity16(struct iscsi_context *iscsi, int lun, uint64_t *blocks, uint32_t *block_size) {
    struct scsi_task *task = iscsi_readcapacity16_sync(iscsi, lun);
    if (task == NULL) return -1;
    if (task->status != SCSI_STATUS_GOOD) {
        scsi_free_scsi_task(task);
        return -1;
    }
    struct scsi_readcapacity16 *rc16 = scsi_datain_unmarshall(task);
    if (rc16 == NULL) {
        scsi_free_scsi_task(task);
        return -1;
    }
    *blocks = rc16->returned_lba + 1;
    *block_size = rc16->block_length;
    scsi_free_scsi_task(task);
    return 0;
}

static void connect_done(struct iscsi_context *iscsi, int status, void *command_data, void *private_data) {
    (void)iscsi;
    (void)command_data;
    *(int32_t *)private_data = status == SCSI_STATUS_GOOD ? 0 : -1;
}

int plx_iscsi_connect_async(struct iscsi_context *iscsi, const char *portal, int lun, int32_t *status) {
    *status = plx_ISCSI_PENDING;
    return iscsi_full_connect_async(iscsi, portal, lun, connect_done, status);
}

int plx_iscsi_report_luns(struct iscsi_context *iscsi, uint16_t *luns, int capacity) {
    struct scsi_task *task = iscsi_reportluns_sync(iscsi, 0, 16384);
    if (task == NULL) return -1;
    if (task->status != SCSI_STATUS_GOOD) {
        scsi_free_scsi_task(task);
        return -1;
    }
    struct scsi_reportluns_list *list = scsi_datain_unmarshall(task);
    if (list == NULL) {
        scsi_free_scsi_task(task);
        return -1;
    }
    int n = (int)list->num;
    for (int i = 0; i < n && i < capacity; i++) luns[i] = list->luns[i];
    scsi_free_scsi_task(task);
    return n;
}
