<?php
// Cron of the stand-in: like Moodle's admin/cli/cron.php it needs the database, and it records its run
// (mdl_config 'lastcron') so a test can see that it ran against the restored site.
define('CLI_SCRIPT', true);
require(__DIR__ . '/../../config.php');

try {
    $db = moodle_db();
    $now = (string)time();
    $up = $db->prepare("UPDATE {$CFG->prefix}config SET value = ? WHERE name = 'lastcron'");
    $up->execute([$now]);
    if ($up->rowCount() === 0) {
        $db->prepare("INSERT INTO {$CFG->prefix}config (name, value) VALUES ('lastcron', ?)")->execute([$now]);
    }
} catch (Throwable $e) {
    fwrite(STDERR, "Cron failed: " . $e->getMessage() . "\n");
    exit(1);
}
echo "Cron run completed correctly\n";
exit(0);
