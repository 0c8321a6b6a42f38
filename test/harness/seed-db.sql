-- A Moodle-like schema: several InnoDB tables with thousands of rows (MariaDB's seq_ tables generate rows).
CREATE TABLE mdl_config (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(190) NOT NULL UNIQUE, value LONGTEXT NOT NULL) ENGINE=InnoDB;
INSERT INTO mdl_config (name, value) VALUES ('version', '2024100700.00'), ('release', '4.5 (Build: 20241007)'), ('siteidentifier', 'abc123localhost');
INSERT INTO mdl_config (name, value) SELECT CONCAT('setting_', seq), REPEAT(CHAR(65 + seq % 26), 1 + seq % 40) FROM seq_1_to_400;
CREATE TABLE mdl_user (id BIGINT AUTO_INCREMENT PRIMARY KEY, username VARCHAR(100) NOT NULL UNIQUE, email VARCHAR(100), firstname VARCHAR(100), lastname VARCHAR(100), timecreated BIGINT NOT NULL) ENGINE=InnoDB;
INSERT INTO mdl_user (username, email, firstname, lastname, timecreated) SELECT CONCAT('user', seq), CONCAT('user', seq, '@example.org'), CONCAT('Vorname', seq), 'Müller-Ñuñez', 1700000000 + seq FROM seq_1_to_@USERS@;
CREATE TABLE mdl_course (id BIGINT AUTO_INCREMENT PRIMARY KEY, fullname VARCHAR(254), shortname VARCHAR(255), summary LONGTEXT) ENGINE=InnoDB;
INSERT INTO mdl_course (fullname, shortname, summary) SELECT CONCAT('Course ', seq), CONCAT('C', seq), REPEAT('Summary text. ', seq % 50) FROM seq_1_to_300;
CREATE TABLE mdl_files (id BIGINT AUTO_INCREMENT PRIMARY KEY, contenthash VARCHAR(40), filename VARCHAR(255), filesize BIGINT, userid BIGINT) ENGINE=InnoDB;
INSERT INTO mdl_files (contenthash, filename, filesize, userid) SELECT SHA1(seq), CONCAT('file', seq, '.pdf'), seq * 100, 1 + seq % 50 FROM seq_1_to_3000;
CREATE TABLE mdl_logstore_standard_log (id BIGINT AUTO_INCREMENT PRIMARY KEY, eventname VARCHAR(255), userid BIGINT, courseid BIGINT, timecreated BIGINT) ENGINE=InnoDB;
INSERT INTO mdl_logstore_standard_log (eventname, userid, courseid, timecreated) SELECT '\\core\\event\\course_viewed', 1 + seq % 2000, 1 + seq % 300, 1700000000 + seq FROM seq_1_to_@LOGS@;
