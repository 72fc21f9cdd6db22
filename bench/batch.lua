-- wrk script: POST /internal/messages/batch with 10 fresh messages per request from 10 of 500
-- students (what one long-poll of a busy course brings), with the internal token.
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  token = os.getenv("LESSONBOT_INTERNAL_TOKEN")
  run_tag = os.getenv("BENCH_RUN_TAG") or "run"
end

function request()
  local messages = {}
  for i = 1, 10 do
    counter = counter + 1
    messages[i] = string.format(
      '{"message_id": "batch:%s:%d:%d", "sender_email": "student%d@bench.example", "sender_full_name": "Bench Student", "content": "help"}',
      run_tag, thread_id, counter, (counter * 7 + thread_id) % 500)
  end
  return wrk.format("POST", "/internal/messages/batch",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token},
    '{"messages": [' .. table.concat(messages, ", ") .. ']}')
end
