<?php  // Moodle configuration file (test stand-in; Bitnami writes the same keys from env on first start).
unset($CFG);
global $CFG;
$CFG = new stdClass();

$CFG->dbtype    = getenv('MOODLE_DATABASE_TYPE') ?: 'mariadb';
$CFG->dblibrary = 'native';
$CFG->dbhost    = getenv('MOODLE_DATABASE_HOST') ?: 'mariadb';
$CFG->dbname    = getenv('MOODLE_DATABASE_NAME') ?: 'bitnami_moodle';
$CFG->dbuser    = getenv('MOODLE_DATABASE_USER') ?: 'bn_moodle';
$CFG->dbpass    = getenv('MOODLE_DATABASE_PASSWORD') ?: '';
$CFG->prefix    = 'mdl_';
$CFG->dboptions = array('dbport' => (int)(getenv('MOODLE_DATABASE_PORT_NUMBER') ?: ($CFG->dbtype === 'pgsql' ? 5432 : 3306)));

$CFG->wwwroot   = 'http://localhost:8080';
$CFG->dataroot  = '/bitnami/moodledata';
$CFG->admin     = 'admin';
$CFG->directorypermissions = 02775;

require_once(__DIR__ . '/lib/setup.php');
