"""Channel variables shared with the dialplan (asterisk/conf/extensions.conf). One place only."""

# Set by the controller.
DONE = "HOTLINE_DONE"  # "route" or "hangup": the controller finished; anything else -> fallback queue
QUEUE = "HOTLINE_QUEUE"
PRIORITY = "HOTLINE_PRIORITY"  # set early, so even the dialplan's fallback keeps the caller's class
CUSTOMER_CLASS = "HOTLINE_CLASS"
SKILL = "HOTLINE_SKILL"
QUEUE_TIMEOUT = "HOTLINE_QUEUE_TIMEOUT"  # seconds in the queue before overflowing (empty: none)
OVERFLOW_QUEUE = "HOTLINE_OVERFLOW_QUEUE"  # where to overflow to (empty: the default queue)
QUEUE_OPTIONS = "HOTLINE_QUEUE_OPTIONS"  # Queue() options ("rc": ring back, continue after the agent)
SURVEY = "HOTLINE_SURVEY"  # "1": run the survey AGI when the agent hangs up
SURVEY_SCORE = "HOTLINE_SURVEY_SCORE"  # the caller's 1-5
LANGUAGE = "CHANNEL(language)"

DONE_ROUTE = "route"
DONE_HANGUP = "hangup"

# Set by the dialplan.
FALLBACK = "HOTLINE_FALLBACK"  # why the dialplan took over: FAILURE, HANGUP, controller_lost ...
OVERFLOW = "HOTLINE_OVERFLOW"  # the queue status that sent the caller on to the default queue
QUEUED_AT = "HOTLINE_QUEUED_AT"  # epoch seconds when the caller last joined a queue
QUEUE_LEFT = "HOTLINE_QUEUE_LEFT"  # epoch seconds when Queue() returned (the agent hung up)
MAX_PENALTY = "HOTLINE_MAX_PENALTY"  # initial QUEUE_MAX_PENALTY: level-1 agents first, then widening

# Set by app_queue (setinterfacevar, setqueueentryvar, setqueuevar in queues.conf).
QUEUE_STATUS = "QUEUESTATUS"
ABANDONED = "ABANDONED"
MEMBER_INTERFACE = "MEMBERINTERFACE"
MEMBER_NAME = "MEMBERNAME"
HOLD_TIME = "QEHOLDTIME"
QUEUE_NAME = "QUEUENAME"

FINISH_VARIABLES = (
    DONE,
    QUEUE,
    PRIORITY,
    CUSTOMER_CLASS,
    SKILL,
    FALLBACK,
    OVERFLOW,
    QUEUED_AT,
    QUEUE_LEFT,
    SURVEY_SCORE,
    QUEUE_STATUS,
    ABANDONED,
    MEMBER_INTERFACE,
    MEMBER_NAME,
    HOLD_TIME,
    QUEUE_NAME,
)

# Queue statuses after which the caller was never connected because of the queue itself.
QUEUE_NOT_JOINED = {"UNKNOWN", "JOINEMPTY", "JOINUNAVAIL", "FULL"}
