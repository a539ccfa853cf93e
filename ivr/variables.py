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
SURVEY = "HOTLINE_SURVEY"  # "1": the dialplan asks the survey when the agent hangs up
SURVEY_PROMPT = "HOTLINE_SURVEY_PROMPT"  # the survey's prompt, in the caller's language
SURVEY_THANKS = "HOTLINE_SURVEY_THANKS"  # played after a score (empty: nothing)
SURVEY_ATTEMPTS = "HOTLINE_SURVEY_ATTEMPTS"  # times the question is asked until a 1-5
SURVEY_TIMEOUT = "HOTLINE_SURVEY_TIMEOUT"  # seconds to wait for the key after the question
SURVEY_SCORE = "HOTLINE_SURVEY_SCORE"  # the caller's 1-5
LANGUAGE = "CHANNEL(language)"
# Waiting in the queue (the dialplan's stint loop, the wait AGI).
ANNOUNCE = "HOTLINE_ANNOUNCE"  # "1": the wait AGI runs between stints (announcements, later overflow steps)
ANNOUNCE_EVERY = "HOTLINE_ANNOUNCE_EVERY"  # stint length after an overflow
STINT = "HOTLINE_STINT"  # seconds of the next Queue() stint (empty: until answered)
REJOIN = "HOTLINE_REJOIN"  # position to rejoin at (Queue's position argument)
RULE = "HOTLINE_RULE"  # penalty rule for the next stint
QUEUE_PRIO = "QUEUE_PRIO"  # app_queue's priority at join (the aged one on a rejoin)
QUEUE_MAX_PENALTY = "QUEUE_MAX_PENALTY"
WAIT_NEXT = "HOTLINE_WAIT_NEXT"  # the wait AGI's answer: queue, overflow or callback
WAIT_KEY = "HOTLINE_WAIT_KEY"  # "1": the caller pressed 1 while queued (callback)
ANNOUNCED = "HOTLINE_ANNOUNCED"  # what the caller was told, e.g. "pos=2,wait=90;pos=1,wait=30"
CALLBACK = "HOTLINE_CALLBACK"  # the id of the callback booked by / placed for this call
WAIT_QUEUE = "queue"
WAIT_OVERFLOW = "overflow"
WAIT_CALLBACK = "callback"

RECORDED = "HOTLINE_RECORDED"  # "1": finish stored the outcome (else the dialplan journals the call)

DONE_ROUTE = "route"
DONE_HANGUP = "hangup"

# Set by the dialplan.
FALLBACK = "HOTLINE_FALLBACK"  # why the dialplan took over: FAILURE, HANGUP, controller_lost ...
OVERFLOW = "HOTLINE_OVERFLOW"  # the queue status that sent the caller on to the default queue
QUEUED_AT = "HOTLINE_QUEUED_AT"  # epoch seconds when the caller last joined a queue
QUEUE_LEFT = "HOTLINE_QUEUE_LEFT"  # epoch seconds when Queue() returned (the agent hung up)
MAX_PENALTY = "HOTLINE_MAX_PENALTY"  # initial QUEUE_MAX_PENALTY: level-1 agents first, then widening
IN_QUEUE = "HOTLINE_IN_QUEUE"  # the queue of the current stint (the target, or the overflow queue)
OVERFLOWED = "HOTLINE_OVERFLOWED"  # how many overflow steps the caller took (empty: none)
OVERFLOW_PATH = "HOTLINE_OVERFLOW_PATH"  # the queues left for an overflow, "a>b>"
OVERFLOWED_AT = "HOTLINE_OVERFLOWED_AT"  # epoch seconds of the last overflow (widening starts again there)
QUEUE_POSITION = "QUEUEPOSITION"  # app_queue: the caller's position when it left the queue
STINT_AT = "HOTLINE_STINT_AT"  # epoch seconds when the current stint began (answered = this + QEHOLDTIME)
# Callback legs (extensions.conf hotline-callback-dial).
CALLBACK_AGENT = "CB_AGENT"
CALLBACK_DIALLED_AT = "CB_DIALLED_AT"
DIAL_STATUS = "DIALSTATUS"

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
    STINT_AT,
    IN_QUEUE,
    ANNOUNCED,
    CALLBACK,
    WAIT_NEXT,
    OVERFLOW_PATH,
)

# Queue statuses after which the caller was never connected because of the queue itself.
QUEUE_NOT_JOINED = {"UNKNOWN", "JOINEMPTY", "JOINUNAVAIL", "FULL"}
